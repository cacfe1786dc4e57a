/* cmd_predict.c - `onnx-tl predict` (../shared/CLI.md). Not implemented yet: being written. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_predict(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "onnx-tl: command 'predict' is not implemented in this version (%s)\n", OTL_VERSION);
    return EXIT_USAGE;
}

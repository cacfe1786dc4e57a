/* cmd_eval.c - `onnx-tl eval` (../shared/CLI.md). Not implemented yet: being written. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_eval(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "onnx-tl: command 'eval' is not implemented in this version (%s)\n", OTL_VERSION);
    return EXIT_USAGE;
}

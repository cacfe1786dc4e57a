/* cmd_train.c - `onnx-tl train` (../shared/CLI.md). Not implemented yet: being written. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "onnx-tl: command 'train' is not implemented in this version (%s)\n", OTL_VERSION);
    return EXIT_USAGE;
}

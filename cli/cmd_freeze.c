/* cmd_freeze.c - `onnx-tl freeze` (../shared/CLI.md). Not implemented yet: being written. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_freeze(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "onnx-tl: command 'freeze' is not implemented in this version (%s)\n", OTL_VERSION);
    return EXIT_USAGE;
}

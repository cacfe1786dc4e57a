/* cmd_swap_head.c - `onnx-tl swap-head` (../shared/CLI.md). Not implemented yet: being written. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_swap_head(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "onnx-tl: command 'swap-head' is not implemented in this version (%s)\n", OTL_VERSION);
    return EXIT_USAGE;
}

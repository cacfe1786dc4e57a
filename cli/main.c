/* main.c - onnx-tl entry point: dispatches to one function per command (cli/cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "usage: onnx-tl COMMAND [options]   (onnx-tl COMMAND --help for details)\n"
    "\n"
    "Transfer learning on ONNX models, on the CPU.\n"
    "\n"
    "commands:\n"
    "  info      summarize a model: inputs/outputs, opset, parameters, ops, layers, head\n"
    "  export    clean inference model (Dropout removed, BN folded), --quantize int8, --keep\n"
    "  run       forward pass on .npy inputs, writes one .npy per output\n"
    "  swap-head replace the classifier head by a new one with N classes\n"
    "  freeze    mark parameters frozen/trainable, or list them\n"
    "  grad      one forward+backward pass: loss and parameter gradients as .npy\n"
    "  train     fine-tune on a data set (epochs, schedules, validation, checkpoints)\n"
    "  eval      accuracy, macro F1, per-class precision/recall/F1, confusion matrix\n"
    "  predict   classify images (top-K labels with confidence)\n"
    "\n"
    "options: --help, --version\n"
    "exit status: 0 success, 1 a problem with the input, 2 bad usage\n";

static const struct {
    const char *name;
    int (*fn)(int, char **);
} commands[] = {
    {"info", cmd_info},
    {"export", cmd_export},
    {"run", cmd_run},
    {"grad", cmd_grad},
    {"swap-head", cmd_swap_head},
    {"freeze", cmd_freeze},
    {"train", cmd_train},
    {"eval", cmd_eval},
    {"predict", cmd_predict},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("onnx-tl %s\n", OTL_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "onnx-tl: unknown command '%s' (see onnx-tl --help)\n", cmd);
    return EXIT_USAGE;
}

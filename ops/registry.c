/* registry.c - op look-up by (domain, op_type, opset) over the X-macro list. */
#include <string.h>

#include "ops/op.h"
#include "ops/registry.h"

#define DECLARE(name) extern const otl_op otl_op_##name;
OTL_OPS(DECLARE)
#undef DECLARE

#define ENTRY(name) &otl_op_##name,
static const otl_op *const ops[] = {OTL_OPS(ENTRY) NULL};
#undef ENTRY

static int same_domain(const char *a, const char *b)
{
    if (!*a || strcmp(a, "ai.onnx") == 0)
        return !*b || strcmp(b, "ai.onnx") == 0;
    return strcmp(a, b) == 0;
}

const otl_op *otl_op_find(const char *domain, const char *op_type, int64_t opset, const char **why)
{
    const otl_op *found = NULL;
    if (why)
        *why = NULL;
    for (int i = 0; ops[i]; i++) {
        const otl_op *o = ops[i];
        if (strcmp(o->op_type, op_type) != 0 || !same_domain(o->domain, domain))
            continue;
        int until = o->until ? o->until : 17;
        if (opset >= o->since && opset <= until)
            return o;
        found = o;
    }
    if (found && why)
        *why = opset < found->since ? "opset older than implemented" : "opset newer than implemented";
    return NULL;
}

int otl_op_supported(const char *domain, const char *op_type, int64_t opset)
{
    return otl_op_find(domain, op_type, opset, NULL) != NULL;
}

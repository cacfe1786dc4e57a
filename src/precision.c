/* precision.c - the compute precision of sessions and trainers (OTL_PRECISION_*): names and
 * the CPU check for bf16 (oneDNN's avx512_core_bf16 kernels; without them oneDNN would run
 * bf16 convolutions on its reference kernels, orders of magnitude slower). */
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "onnxtl.h"

int otl_precision_parse(const char *name)
{
    if (!name)
        return -1;
    if (strcmp(name, "fp32") == 0)
        return OTL_PRECISION_FP32;
    if (strcmp(name, "bf16") == 0)
        return OTL_PRECISION_BF16;
    return -1;
}

const char *otl_precision_name(int precision)
{
    return precision == OTL_PRECISION_FP32 ? "fp32" : precision == OTL_PRECISION_BF16 ? "bf16" : "?";
}

static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "an instruction set without AVX-512";
    }
}

otl_status otl_precision_check(int precision, otl_error *err)
{
    if (precision == OTL_PRECISION_FP32)
        return OTL_OK;
    if (precision != OTL_PRECISION_BF16)
        return otl_error_set(err, OTL_ERR_INPUT, "unknown precision %d (fp32 or bf16)", precision);
    /* the ISA bits are cumulative: avx512_core_amx includes avx512_core_bf16 */
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16)
        return OTL_OK;
    int capped = getenv("ONEDNN_MAX_CPU_ISA") || getenv("DNNL_MAX_CPU_ISA");
    return otl_error_set(err, OTL_ERR_UNSUPPORTED,
                         "--precision bf16 needs a CPU with AVX512_BF16 instructions, but oneDNN runs this one as %s%s; "
                         "use --precision fp32",
                         isa_name(isa), capped ? " (capped by ONEDNN_MAX_CPU_ISA)" : "");
}

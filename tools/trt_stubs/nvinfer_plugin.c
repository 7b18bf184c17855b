/* Stand-in for libnvinfer_plugin.so.11: the one symbol tensorrt_bindings/tensorrt.so takes from it (see stub.h). */
#include <stdbool.h>

#include "stub.h"

bool initLibNvInferPlugins(void *logger, const char *lib_namespace) {
    (void)logger, (void)lib_namespace;
    TRT_STUB_CALLED("initLibNvInferPlugins");
}

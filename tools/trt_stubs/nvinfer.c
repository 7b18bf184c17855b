/* Stand-in for libnvinfer.so.11: the five symbols tensorrt_bindings/tensorrt.so takes from it (see stub.h). */
#include <stdint.h>

#include "stub.h"

void *createInferBuilder_INTERNAL(void *logger, int32_t version) {
    (void)logger, (void)version;
    TRT_STUB_CALLED("createInferBuilder_INTERNAL");
}

void *createInferRefitter_INTERNAL(void *engine, void *logger, int32_t version) {
    (void)engine, (void)logger, (void)version;
    TRT_STUB_CALLED("createInferRefitter_INTERNAL");
}

void *createInferRuntime_INTERNAL(void *logger, int32_t version) {
    (void)logger, (void)version;
    TRT_STUB_CALLED("createInferRuntime_INTERNAL");
}

void *getBuilderPluginRegistry(int32_t capability) {
    (void)capability;
    TRT_STUB_CALLED("getBuilderPluginRegistry");
}

void *getPluginRegistry(void) { TRT_STUB_CALLED("getPluginRegistry"); }

/* Stand-in for libnvonnxparser.so.11: the three symbols tensorrt_bindings/tensorrt.so takes from it (see stub.h). */
#include <stdint.h>

#include "stub.h"

void *createNvOnnxParser_INTERNAL(void *network, void *logger, int32_t version) {
    (void)network, (void)logger, (void)version;
    TRT_STUB_CALLED("createNvOnnxParser_INTERNAL");
}

void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int32_t version) {
    (void)refitter, (void)logger, (void)version;
    TRT_STUB_CALLED("createNvOnnxParserRefitter_INTERNAL");
}

int getNvOnnxParserVersion(void) { TRT_STUB_CALLED("getNvOnnxParserVersion"); }

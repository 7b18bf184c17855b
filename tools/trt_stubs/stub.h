/* Shared by the TensorRT stand-in libraries: any call aborts with its name.
 *
 * These are NOT TensorRT. They exist only so that the real tensorrt_bindings wheel
 * (tensorrt.so, which links libnvinfer.so.11, libnvonnxparser.so.11 and
 * libnvinfer_plugin.so.11) can be imported on a machine without TensorRT, to read
 * its classes, enums and pybind11 signatures. Anything that would reach the real
 * library (a Builder, a Runtime, a parser) aborts here instead of misbehaving.
 */
#ifndef EDGE_EMOTION_TRT_STUB_H
#define EDGE_EMOTION_TRT_STUB_H
#include <stdio.h>
#include <stdlib.h>

#define TRT_STUB_CALLED(name)                                                                        \
    do {                                                                                             \
        fprintf(stderr, "%s called: this is a stand-in library (names and signatures only)\n", name); \
        abort();                                                                                     \
    } while (0)

#endif

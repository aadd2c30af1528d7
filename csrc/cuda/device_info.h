// Plain C++ view of the CUDA devices, filled by device_info.cu.
#pragma once
#include <cuda_runtime.h>

#include <string>
#include <vector>

namespace pynn::cuda {

struct DeviceEntry {
    std::string name;
    int major = 0, minor = 0;
    size_t total_memory = 0;
    bool supported = false;  // this build carries SASS or PTX for the device's architecture
};

struct DeviceReport {
    int runtime_version = 0;
    int driver_version = 0;  // 0 when no driver is installed
    std::string error;       // why no device could be queried, empty on success
    std::vector<DeviceEntry> devices;
};

DeviceReport query_devices(const char* compiled_archs);

// Whether a build for `list` (CMAKE_CUDA_ARCHITECTURES items, comma-separated: "80-real,90",
// "90a", "100f", "native") runs on a GPU of compute capability major.minor.
bool arch_compiled(int major, int minor, const std::string& list);

// A first kernel: fills n floats at device_ptr on stream; returns "" or the CUDA error text.
std::string fill(float* device_ptr, float value, long long n, cudaStream_t stream);

}  // namespace pynn::cuda

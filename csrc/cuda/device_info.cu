// Device discovery for pynn._cuda: how many GPUs, what they are, and whether this build
// carries code for them. Kept free of pybind11 so the bindings stay the only Python-aware file.
#include <cuda_runtime.h>

#include <string>

#include "cuda/device_info.h"

namespace pynn::cuda {

namespace {
// Architectures compiled into this module, e.g. "80-real,90" -> compute capability list.
bool arch_compiled(int major, int minor, const char* archs) {
    std::string list(archs);
    std::string want = std::to_string(major * 10 + minor);
    size_t pos = 0;
    while (pos <= list.size()) {
        size_t end = list.find(',', pos);
        if (end == std::string::npos) end = list.size();
        std::string item = list.substr(pos, end - pos);
        std::string num = item.substr(0, item.find('-'));
        if (num.empty()) {
            pos = end + 1;
            continue;
        }
        const int cc = std::stoi(num);  // "90a" -> 90 (the suffix is checked below)
        const bool arch_specific = num.back() == 'a' || num.back() == 'f';
        // PTX ("90" or "90-virtual") JIT-compiles for any newer GPU; SASS ("-real", or the
        // real half of "90") runs on GPUs of the same major version and an equal or higher
        // minor one (8.0 code on 8.6 and 8.9), arch-specific SASS ("90a") on that GPU only.
        const bool has_ptx = item.find("-real") == std::string::npos && !arch_specific;
        if (num == want) return true;
        if (has_ptx && cc <= major * 10 + minor) return true;
        if (!arch_specific && item.find("-virtual") == std::string::npos && cc / 10 == major &&
            cc % 10 <= minor)
            return true;
        pos = end + 1;
    }
    return false;
}

__global__ void fill_kernel(float* out, float value, long long n) {
    long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
    if (i < n) out[i] = value;
}
}  // namespace

DeviceReport query_devices(const char* compiled_archs) {
    DeviceReport report;
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    report.runtime_version = runtime;
    if (cudaDriverGetVersion(&driver) == cudaSuccess) report.driver_version = driver;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        report.error = cudaGetErrorString(err);
        cudaGetLastError();  // clear the sticky error so later calls start clean
        return report;
    }
    for (int d = 0; d < count; ++d) {
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
        DeviceEntry e;
        e.name = prop.name;
        e.major = prop.major;
        e.minor = prop.minor;
        e.total_memory = prop.totalGlobalMem;
        e.supported = arch_compiled(prop.major, prop.minor, compiled_archs);
        report.devices.push_back(e);
    }
    return report;
}

std::string fill(float* device_ptr, float value, long long n, cudaStream_t stream) {
    if (n <= 0) return "";
    int threads = 256;
    long long blocks = (n + threads - 1) / threads;
    fill_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(device_ptr, value, n);
    cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? "" : cudaGetErrorString(err);
}

}  // namespace pynn::cuda

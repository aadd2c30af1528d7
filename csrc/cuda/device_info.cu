// Device discovery for pynn._cuda: how many GPUs, what they are, and whether this build
// carries code for them. Kept free of pybind11 so the bindings stay the only Python-aware file.
#include <cuda_runtime.h>

#include <cctype>
#include <string>

#include "cuda/device_info.h"

namespace pynn::cuda {

bool arch_compiled(int major, int minor, const std::string& list) {
    const int have = major * 10 + minor;
    size_t pos = 0;
    while (pos <= list.size()) {
        size_t end = list.find(',', pos);
        if (end == std::string::npos) end = list.size();
        const std::string item = list.substr(pos, end - pos);
        pos = end + 1;
        const std::string arch = item.substr(0, item.find('-'));
        if (arch.empty()) continue;
        size_t digits = 0;
        while (digits < arch.size() && std::isdigit(static_cast<unsigned char>(arch[digits])))
            ++digits;
        // "native", "all", "all-major": CMake chose the architectures when it built; they
        // cannot be told from here, so the device is taken as covered
        if (digits == 0) return true;
        if (digits > 4) continue;  // no such architecture (and beyond stoi's int)
        const int cc = std::stoi(arch.substr(0, digits));
        const std::string suffix = arch.substr(digits);
        const bool real_only = item.find("-real") != std::string::npos;
        const bool virtual_only = item.find("-virtual") != std::string::npos;
        if (suffix == "a") {  // arch-specific ("90a"): that GPU only, SASS or PTX
            if (cc == have) return true;
        } else if (suffix == "f") {  // family-specific ("100f"): its major, newer minors
            if (cc / 10 == major && cc % 10 <= minor) return true;
        } else if (suffix.empty()) {
            // PTX ("90", "90-virtual") JIT-compiles for any newer GPU; SASS ("90-real", the
            // real half of "90") runs on its major version at an equal or higher minor one
            // (8.0 code on 8.6 and 8.9)
            if (!real_only && cc <= have) return true;
            if (!virtual_only && cc / 10 == major && cc % 10 <= minor) return true;
        }
    }
    return false;
}

namespace {

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

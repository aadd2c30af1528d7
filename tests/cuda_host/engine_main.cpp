// Drives csrc/cuda/engine.cpp on the host stand-ins (mock_cuda.cpp) for
// tests/test_cuda_engine_host_code.py: reads a model, its optimizer state, data and one
// train() call's arguments from a binary file, runs the call, writes the logs and the
// updated arrays. Layout (little-endian; the test writes it):
//   17 int64: layers, loss, optimizer, max_batch, count_hits, rows, cols, y_int64,
//             order_len, first, last, batch, n_lr, nesterov, amsgrad, step0, slots
//   6 float64: beta1, beta2, eps, weight_decay, momentum, loss_param
//   int64 sizes[layers + 1], activations[layers], trainable[layers], has_bias[layers];
//   float64 activation_params[layers]
//   per layer: float32 kernel, bias (if any), then per slot its kernel and bias slots (if
//   trainable)
//   float32 x[rows * cols]; labels int64[rows] (y_int64) or float32 targets[rows * out];
//   int64 order[order_len]; float32 lr[n_lr]; float64 dropout rates[layers + 1] and uint64
//   seeds[layers + 1] (the inputs', then each layer's; rate 0: none)
// Output: float64 logs[(last - first) * 3], then each layer's arrays in the input order.
// An exception's message goes to stderr, exit status 3.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <vector>

#include "cuda/engine.h"

using namespace pynn;
using namespace pynn::cuda;

namespace {

template <class T>
std::vector<T> read(std::FILE* f, std::size_t n) {
    std::vector<T> v(n);
    if (n && std::fread(v.data(), sizeof(T), n, f) != n) throw std::runtime_error("short input");
    return v;
}

template <class T>
void write(std::FILE* f, const std::vector<T>& v) {
    std::fwrite(v.data(), sizeof(T), v.size(), f);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    try {
        std::FILE* in = std::fopen(argv[1], "rb");
        if (!in) return 2;
        const auto h = read<std::int64_t>(in, 17);
        const auto d = read<double>(in, 6);
        const index_t L = h[0], slots = h[16];
        const auto sizes = read<std::int64_t>(in, L + 1);
        const auto acts = read<std::int64_t>(in, L);
        const auto trainable = read<std::int64_t>(in, L);
        const auto has_bias = read<std::int64_t>(in, L);
        const auto params = read<double>(in, L);
        std::vector<std::vector<float>> arrays;  // every layer array, in the file's order
        arrays.reserve(static_cast<std::size_t>(L) * (2 + 2 * slots));
        std::vector<EngineLayer> layers(L);
        for (index_t l = 0; l < L; ++l) {
            EngineLayer& layer = layers[l];
            layer.in = sizes[l];
            layer.out = sizes[l + 1];
            layer.act = static_cast<Activation>(acts[l]);
            layer.act_param = static_cast<float>(params[l]);
            layer.trainable = trainable[l] != 0;
            const std::size_t nw = layer.in * layer.out, nb = layer.out;
            layer.w = arrays.emplace_back(read<float>(in, nw)).data();
            if (has_bias[l]) layer.b = arrays.emplace_back(read<float>(in, nb)).data();
            if (!layer.trainable) continue;
            for (index_t s = 0; s < slots; ++s) {
                layer.w_slots.push_back(arrays.emplace_back(read<float>(in, nw)).data());
                if (has_bias[l])
                    layer.b_slots.push_back(arrays.emplace_back(read<float>(in, nb)).data());
            }
        }
        const index_t rows = h[5], cols = h[6], out = sizes[L];
        const auto x = read<float>(in, rows * cols);
        std::vector<std::int64_t> labels;
        std::vector<float> targets;
        EngineData data;
        data.x = x.data();
        data.rows = rows;
        data.cols = cols;
        data.y_int64 = h[7] != 0;
        if (data.y_int64) {
            labels = read<std::int64_t>(in, rows);
            data.y = labels.data();
        } else {
            targets = read<float>(in, rows * out);
            data.y = targets.data();
        }
        const auto order = read<std::int64_t>(in, h[8]);
        EngineHyper hyper;
        hyper.lr = read<float>(in, h[12]);
        const auto drop_rates = read<double>(in, L + 1);
        const auto drop_seeds = read<std::uint64_t>(in, L + 1);
        std::fclose(in);
        hyper.beta1 = d[0];
        hyper.beta2 = d[1];
        hyper.eps = static_cast<float>(d[2]);
        hyper.weight_decay = static_cast<float>(d[3]);
        hyper.momentum = static_cast<float>(d[4]);
        hyper.loss_param = static_cast<float>(d[5]);
        hyper.nesterov = h[13] != 0;
        hyper.amsgrad = h[14] != 0;
        hyper.step0 = h[15];
        GpuDenseEngine engine(layers, static_cast<EngineLoss>(h[1]),
                              static_cast<EngineOptimizer>(h[2]), h[3], h[4] != 0, 0);
        for (index_t l = -1; l < L; ++l)
            if (drop_rates[l + 1] > 0.0)
                engine.set_dropout(static_cast<int>(l), drop_rates[l + 1], drop_seeds[l + 1]);
        const auto logs = engine.train(data, order.data(), h[8], h[9], h[10], h[11], hyper,
                                       nullptr);
        std::FILE* f = std::fopen(argv[2], "wb");
        if (!f) return 2;
        std::vector<double> flat;
        for (const auto& b : logs) {
            flat.push_back(b.loss_sum);
            flat.push_back(static_cast<double>(b.rows));
            flat.push_back(static_cast<double>(b.hits));
        }
        write(f, flat);
        for (const auto& a : arrays) write(f, a);
        std::fclose(f);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 3;
    }
    return 0;
}

// swift-tools-version:6.1
import PackageDescription

// Kernels are C on the OpenMP runtime (libomp, called through GOMP_parallel in parallel.c, so no
// -fopenmp flag). No unsafe flags anywhere: the library must build when resolved by version.
// SIMD paths are selected at run time (cpu_features.c), so no -march flag is ever passed: the
// same binary runs on AVX-512, AVX2 and plain x86-64 (`make test-portable` builds it with the x86
// kernels compiled out). OpenBLAS is only the benchmarks' ceiling: the library does not link it.

let package = Package(
    name: "QLoRA",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "QLoRA", targets: ["QLoRA"]),
        .executable(name: "qlora", targets: ["qlora"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CQLoRAKernels", path: "Sources/CQLoRAKernels",
                linkerSettings: [.linkedLibrary("omp5"), .linkedLibrary("m")]),
        .target(name: "QLoRA", dependencies: ["CQLoRAKernels"], path: "Sources/QLoRA"),
        // Data-parallel training over Open MPI (docs/distributed.md): only the executables link
        // it, so the QLoRA library builds without MPI installed.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "QLoRADistributed", dependencies: ["QLoRA", "CMPI"], path: "Sources/QLoRADistributed"),
        .executableTarget(name: "qlora",
                          dependencies: ["QLoRA", "QLoRADistributed", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Sources/qlora"),
        .executableTarget(name: "qlora-bench", dependencies: ["QLoRA", "QLoRADistributed", "CQLoRAKernels", "COpenBLAS"],
                          path: "Benchmarks/Sources"),
        .testTarget(name: "QLoRATests", dependencies: ["QLoRA", "CQLoRAKernels"], path: "Tests/QLoRATests",
                    exclude: ["Fixtures"]),  // test data read by path (Fixtures/tokenizer_cases.json)
    ]
)

// The libFuzzer harness (Tests/Fuzz, `make fuzz`): declared only when QLORA_FUZZ is set, because it
// only links with -sanitize=fuzzer (libFuzzer brings main); the library and `make test` never see it.
if Context.environment["QLORA_FUZZ"] != nil {
    package.targets.append(.executableTarget(name: "qlora-fuzz", dependencies: ["QLoRA"], path: "Tests/Fuzz/Sources"))
}

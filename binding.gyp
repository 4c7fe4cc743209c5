{
  "target_defaults": {
    "cflags!": ["-fno-exceptions", "-O2"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++1y", "-std=gnu++17", "-O2"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-Wall", "-Wno-unused-parameter", "-include", "<(module_root_dir)/native/common/glibc_compat.h"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"]
  },
  "targets": [
    {
      "target_name": "diffpo_avx2",
      "type": "static_library",
      "sources": ["native/cpu/gemm_avx2.cc", "native/cpu/row_kernels_avx2.cc"],
      "cflags_cc": ["-mavx2", "-mfma", "-fPIC"]
    },
    {
      "target_name": "diffpo_core",
      "type": "static_library",
      "dependencies": ["diffpo_avx2"],
      "sources": [
        "native/model.cc",
        "native/lora.cc",
        "native/ops.cc",
        "native/sampler.cc",
        "native/tensor_io.cc",
        "native/common/threadpool.cc",
        "native/common/glibc_compat.cc",
        "native/cpu/cpu_backend.cc",
        "native/cpu/gemm.cc",
        "native/cpu/row_kernels_portable.cc"
      ],
      "cflags_cc": ["-fPIC"]
    },
    {
      "target_name": "diffpo",
      "dependencies": ["diffpo_core"],
      "sources": ["native/bindings.cc", "native/collective/mpi_world.cc"],
      "ldflags": ["-pthread", "-static-libstdc++"],
      "libraries": ["-ldl"]
    }
  ],
  "conditions": [
    ["'<!(node -p \"require('fs').existsSync('native/testing.cc')\")'=='true'", {
      "targets": [
        {
          "target_name": "diffpo_testing",
          "product_dir": "<(PRODUCT_DIR)/testing",
          "dependencies": ["diffpo_core"],
          "sources": ["native/testing_bindings.cc", "native/testing.cc", "native/op_cases.cc"],
          "ldflags": ["-pthread"]
        }
      ]
    }]
  ]
}

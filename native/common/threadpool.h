// A persistent fork-join thread pool (no OpenMP runtime: prebuilt binaries must be self-contained).
// run(n, fn) executes fn(task) for task in [0, n) on the caller plus (threads-1) workers and returns
// when all tasks are done. Jobs from different callers are serialised by a mutex.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace diffpo {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }

  // fn is any callable (int task, int thread). No std::function: nothing is allocated per job.
  template <typename F>
  void run(int ntasks, F&& fn) {
    if (ntasks <= 0) return;
    if (threads_ == 1 || ntasks == 1) {
      for (int i = 0; i < ntasks; i++) fn(i, 0);
      return;
    }
    using Fn = typename std::remove_reference<F>::type;
    dispatch(ntasks, [](void* ctx, int task, int thread) { (*static_cast<Fn*>(ctx))(task, thread); }, &fn);
  }

 private:
  using Trampoline = void (*)(void*, int, int);
  void dispatch(int ntasks, Trampoline tramp, void* ctx);
  void worker(int id);
  void stop();  // wakes and joins every worker
  void drain(int thread);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex job_mutex_;  // one job at a time
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  Trampoline tramp_ = nullptr;
  void* ctx_ = nullptr;
  int ntasks_ = 0;
  std::atomic<int> next_{0};
  std::atomic<int> remaining_{0};
  int active_workers_ = 0;
};

}  // namespace diffpo

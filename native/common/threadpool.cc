#include "threadpool.h"

#include <chrono>
#include <string>
#include <system_error>

#include "errors.h"

namespace diffpo {

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
  try {
    for (int i = 1; i < threads_; i++) workers_.emplace_back([this, i] { worker(i); });
  } catch (const std::system_error& e) {
    // the OS refused a thread (a memory or process cap): stop the ones started, then a typed error
    // (an exception leaving with joinable threads would terminate the process)
    const size_t started = workers_.size() + 1;
    stop();
    throw Error("ERR_INVALID_ARGUMENT",
                "cannot start " + std::to_string(threads_) + " threads here (the OS refused after " + std::to_string(started) + "): " + e.what());
  }
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::drain(int thread) {
  for (;;) {
    int task = next_.fetch_add(1, std::memory_order_relaxed);
    if (task >= ntasks_) break;
    tramp_(ctx_, task, thread);
    remaining_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::dispatch(int ntasks, Trampoline tramp, void* ctx) {
  std::lock_guard<std::mutex> job(job_mutex_);
  {
    std::lock_guard<std::mutex> lk(mu_);
    tramp_ = tramp;
    ctx_ = ctx;
    ntasks_ = ntasks;
    next_.store(0);
    remaining_.store(ntasks);
    active_workers_ = (int)workers_.size();
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  drain(0);
  // Wait for the tasks in flight and for every worker to leave the job (so ctx_ may go out of scope).
  std::unique_lock<std::mutex> lk(mu_);
  done_.wait(lk, [this] { return active_workers_ == 0 && remaining_.load() == 0; });
}

void ThreadPool::worker(int id) {
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly before sleeping: a decoding step launches hundreds of short jobs, and a condition
    // variable wake-up costs tens of microseconds each.
    const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    while (generation_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < spin_until)
      std::this_thread::yield();
    {
      std::unique_lock<std::mutex> lk(mu_);
      wake_.wait(lk, [&] { return stop_ || generation_.load() != seen; });
      if (stop_) return;
      seen = generation_.load();
    }
    drain(id);
    {
      std::lock_guard<std::mutex> lk(mu_);
      active_workers_--;
    }
    done_.notify_one();
  }
}

}  // namespace diffpo

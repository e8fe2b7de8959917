// A small fixed pool of threads for the CPU work of requests that must not run on an IO thread
// or on the engine worker: tokenization and the serialization of answers. FIFO, unbounded queue
// (what enters it was already admitted, so its size is bounded by admission).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tideserve::runtime {

class TaskPool {
 public:
  // `threads` >= 1.
  explicit TaskPool(int threads);
  // Runs every task already posted, then joins the threads.
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  void post(std::function<void()> task);
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mutex_
  bool stopping_ = false;                    // guarded by mutex_
  std::vector<std::thread> threads_;
};

// The default size: a quarter of the CPUs the process may use, at least 1 and at most 4, so
// that beside the engine's threads (all usable CPUs) a 2-core pod does not oversubscribe.
int default_task_threads();

}  // namespace tideserve::runtime

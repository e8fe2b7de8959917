// One engine computes at a time, whichever model it serves. Every model's engine worker takes a
// turn at the gate before each batch and gives it back after: turns are served in the order they
// were asked for (a ticket queue), so a model with a deep queue gets one batch and then waits
// behind every other model that asked meanwhile. With the token budget bounding a batch, a model
// waits at most one batch of each other busy model; no model starves another, and the cores
// (--threads OpenMP threads per batch) are never shared by two batches.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace tideserve::runtime {

class ComputeGate {
 public:
  // Held while one batch computes; releases the gate when destroyed.
  class Turn {
   public:
    Turn() = default;
    explicit Turn(ComputeGate* gate) : gate_(gate) {}
    Turn(Turn&& other) noexcept : gate_(other.gate_) { other.gate_ = nullptr; }
    Turn& operator=(Turn&& other) noexcept {
      if (this != &other) {
        release();
        gate_ = other.gate_;
        other.gate_ = nullptr;
      }
      return *this;
    }
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;
    ~Turn() { release(); }
    void release() {
      if (gate_ != nullptr) gate_->release();
      gate_ = nullptr;
    }

   private:
    ComputeGate* gate_ = nullptr;
  };

  // Blocks until every turn asked for before this one has been given back.
  Turn acquire() {
    std::unique_lock<std::mutex> lock(mutex_);
    const uint64_t ticket = next_ticket_++;
    cv_.wait(lock, [&] { return serving_ == ticket; });
    return Turn(this);
  }

  // Turns asked for and not yet given back (the one computing included).
  int64_t waiting() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int64_t>(next_ticket_ - serving_);
  }

 private:
  void release() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++serving_;
    }
    cv_.notify_all();
  }

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  uint64_t next_ticket_ = 0;  // guarded by mutex_
  uint64_t serving_ = 0;      // guarded by mutex_: the ticket whose turn it is
};

}  // namespace tideserve::runtime

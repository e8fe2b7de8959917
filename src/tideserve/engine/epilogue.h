// What a linear layer does to x W^T + b before it stores it.
#pragma once

namespace tideserve::engine {

enum class Epilogue {
  kNone,
  kGeluErf,
  kGeluTanh,
  kResidual,  // out = x W^T + b + out
};

}  // namespace tideserve::engine

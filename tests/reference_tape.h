// A tiny, independent reverse-mode autodiff over double vectors: the naive
// per-vertex reference the batched runtime is tested against. It shares no
// code with vertex/ or scheduler/: every op is written out here, with its
// gradient, from the math alone.
#pragma once

#include <cmath>
#include <cstddef>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "memory/param_store.h"

namespace copse::reftest {

using Vec = std::vector<double>;

// One parameter tensor (row-major) and its gradient.
struct RefParam {
  std::vector<int> shape;
  Vec value, grad;
  int rows() const { return shape.empty() ? 1 : shape[0]; }
  int row_width() const { return rows() == 0 ? 0 : static_cast<int>(value.size()) / rows(); }
};

// Named parameters copied (as double) from a runtime ParamStore.
class RefParams {
 public:
  template <typename T>
  static RefParams from_store(const memory::ParamStore<T>& ps) {
    RefParams r;
    for (int id = 0; id < ps.size(); ++id) {
      RefParam p;
      p.shape = ps.spec(id).shape;
      const T* src = ps.param(id);
      p.value.assign(src, src + ps.numel(id));
      p.grad.assign(p.value.size(), 0.0);
      r.params_.emplace(ps.spec(id).name, std::move(p));
    }
    return r;
  }

  RefParam& at(const std::string& name) {
    auto it = params_.find(name);
    if (it == params_.end()) throw std::out_of_range("reference: no parameter '" + name + "'");
    return it->second;
  }
  const std::map<std::string, RefParam>& all() const { return params_; }

 private:
  std::map<std::string, RefParam> params_;  // node-based: addresses are stable
};

// The tape: nodes in creation order (a topological order), each with a value,
// a gradient and a closure that pushes its gradient to its inputs.
class Tape {
 public:
  int width(int id) const { return static_cast<int>(nodes_[id].val.size()); }
  const Vec& value(int id) const { return nodes_[id].val; }
  const Vec& grad(int id) const { return nodes_[id].grad; }
  int size() const { return static_cast<int>(nodes_.size()); }

  int constant(Vec v) { return push(std::move(v), nullptr); }
  int zeros(int w) { return constant(Vec(w, 0.0)); }

  // Row `row` of a [rows, width] parameter (an embedding lookup).
  int param_row(RefParam& p, int row) {
    const int w = p.row_width();
    if (row < 0 || row >= p.rows()) throw std::out_of_range("reference: param_row out of range");
    Vec v(p.value.begin() + static_cast<long>(row) * w,
          p.value.begin() + static_cast<long>(row + 1) * w);
    RefParam* pp = &p;
    return push(std::move(v), [pp, row, w](Tape& t, int self) {
      const Vec& g = t.nodes_[self].grad;
      for (int j = 0; j < w; ++j) pp->grad[static_cast<size_t>(row) * w + j] += g[j];
    });
  }

  // y = W concat(inputs) (+ b):  y[o] = sum_k W[o, k] x[k] + b[o];  W is [out, K].
  int linear(RefParam& W, RefParam* b, const std::vector<int>& inputs) {
    int x = concat(inputs);
    const int out = W.shape.at(0), K = W.shape.at(1);
    if (width(x) != K) throw std::invalid_argument("reference: linear input width mismatch");
    if (b && static_cast<int>(b->value.size()) != out)
      throw std::invalid_argument("reference: linear bias width mismatch");
    Vec y(out, 0.0);
    const Vec& xv = nodes_[x].val;
    for (int o = 0; o < out; ++o) {
      double s = b ? b->value[o] : 0.0;
      for (int k = 0; k < K; ++k) s += W.value[static_cast<size_t>(o) * K + k] * xv[k];
      y[o] = s;
    }
    RefParam* wp = &W;
    return push(std::move(y), [wp, b, x, out, K](Tape& t, int self) {
      const Vec& dy = t.nodes_[self].grad;
      const Vec& xv2 = t.nodes_[x].val;
      Vec& dx = t.nodes_[x].grad;
      for (int o = 0; o < out; ++o) {
        for (int k = 0; k < K; ++k) {
          wp->grad[static_cast<size_t>(o) * K + k] += dy[o] * xv2[k];
          dx[k] += wp->value[static_cast<size_t>(o) * K + k] * dy[o];
        }
        if (b) b->grad[o] += dy[o];
      }
    });
  }

  int add(int a, int b) {
    return binary(
        a, b, [](double x, double y) { return x + y; }, 1, 1);
  }
  int sub(int a, int b) {
    return binary(
        a, b, [](double x, double y) { return x - y; }, 1, -1);
  }

  // y = a * b
  int mul(int a, int b) {
    same_width(a, b);
    Vec y(width(a));
    for (int j = 0; j < width(a); ++j) y[j] = value(a)[j] * value(b)[j];
    return push(std::move(y), [a, b](Tape& t, int self) {
      const Vec& g = t.nodes_[self].grad;
      for (size_t j = 0; j < g.size(); ++j) {
        t.nodes_[a].grad[j] += g[j] * t.nodes_[b].val[j];
        t.nodes_[b].grad[j] += g[j] * t.nodes_[a].val[j];
      }
    });
  }

  // y = 1 / (1 + exp(-a)),  dy/da = y (1 - y)
  int sigmoid(int a) {
    return unary(
        a, [](double x) { return 1.0 / (1.0 + std::exp(-x)); },
        [](double, double y) { return y * (1.0 - y); });
  }
  // y = tanh(a),  dy/da = 1 - y^2
  int tanh(int a) {
    return unary(
        a, [](double x) { return std::tanh(x); }, [](double, double y) { return 1.0 - y * y; });
  }
  // y = max(a, 0),  dy/da = [a > 0]
  int relu(int a) {
    return unary(
        a, [](double x) { return x > 0 ? x : 0.0; },
        [](double x, double) { return x > 0 ? 1.0 : 0.0; });
  }
  // y = s * a
  int scale(int a, double s) {
    return unary(
        a, [s](double x) { return s * x; }, [s](double, double) { return s; });
  }

  // y = a[offset, offset + w)
  int slice(int a, int offset, int w) {
    if (offset < 0 || w < 0 || offset + w > width(a))
      throw std::out_of_range("reference: slice out of range");
    Vec y(value(a).begin() + offset, value(a).begin() + offset + w);
    return push(std::move(y), [a, offset](Tape& t, int self) {
      const Vec& g = t.nodes_[self].grad;
      for (size_t j = 0; j < g.size(); ++j) t.nodes_[a].grad[offset + j] += g[j];
    });
  }

  // y = [parts...] side by side
  int concat(const std::vector<int>& parts) {
    if (parts.size() == 1) return parts[0];
    Vec y;
    for (int p : parts) y.insert(y.end(), value(p).begin(), value(p).end());
    return push(std::move(y), [parts](Tape& t, int self) {
      const Vec& g = t.nodes_[self].grad;
      size_t off = 0;
      for (int p : parts) {
        Vec& dp = t.nodes_[p].grad;
        for (size_t j = 0; j < dp.size(); ++j) dp[j] += g[off + j];
        off += dp.size();
      }
    });
  }

  // y = sum of the list (all of one width; the empty list needs `w`)
  int sum(const std::vector<int>& terms, int w) {
    Vec y(w, 0.0);
    for (int p : terms) {
      if (width(p) != w) throw std::invalid_argument("reference: sum width mismatch");
      for (int j = 0; j < w; ++j) y[j] += value(p)[j];
    }
    return push(std::move(y), [terms](Tape& t, int self) {
      const Vec& g = t.nodes_[self].grad;
      for (int p : terms)
        for (size_t j = 0; j < g.size(); ++j) t.nodes_[p].grad[j] += g[j];
    });
  }

  // y = <a, r> (a scalar), r constant
  int dot(int a, Vec r) {
    if (static_cast<int>(r.size()) != width(a)) throw std::invalid_argument("reference: dot width");
    double s = 0;
    for (int j = 0; j < width(a); ++j) s += value(a)[j] * r[j];
    return push(Vec{s}, [a, r = std::move(r)](Tape& t, int self) {
      const double g = t.nodes_[self].grad[0];
      for (size_t j = 0; j < r.size(); ++j) t.nodes_[a].grad[j] += g * r[j];
    });
  }

  // Reverse sweep from the scalar `loss` (seed 1).
  void backward(int loss) {
    if (width(loss) != 1) throw std::invalid_argument("reference: loss is not a scalar");
    nodes_[loss].grad[0] = 1.0;
    for (int i = loss; i >= 0; --i)
      if (nodes_[i].back) nodes_[i].back(*this, i);
  }

 private:
  using Backward = std::function<void(Tape&, int)>;
  struct Node {
    Vec val, grad;
    Backward back;
  };

  int push(Vec v, Backward back) {
    Node n;
    n.grad.assign(v.size(), 0.0);
    n.val = std::move(v);
    n.back = std::move(back);
    nodes_.push_back(std::move(n));
    return static_cast<int>(nodes_.size()) - 1;
  }

  void same_width(int a, int b) const {
    if (width(a) != width(b)) throw std::invalid_argument("reference: width mismatch");
  }

  // y = f(a, b) elementwise with constant partials da, db (add, sub).
  template <typename F>
  int binary(int a, int b, F f, double da, double db) {
    same_width(a, b);
    Vec y(width(a));
    for (int j = 0; j < width(a); ++j) y[j] = f(value(a)[j], value(b)[j]);
    return push(std::move(y), [a, b, da, db](Tape& t, int self) {
      const Vec& g = t.nodes_[self].grad;
      for (size_t j = 0; j < g.size(); ++j) {
        t.nodes_[a].grad[j] += da * g[j];
        t.nodes_[b].grad[j] += db * g[j];
      }
    });
  }

  // y = f(a) elementwise; df(x, y) is dy/dx given the input and the output.
  template <typename F, typename DF>
  int unary(int a, F f, DF df) {
    Vec y(width(a));
    for (int j = 0; j < width(a); ++j) y[j] = f(value(a)[j]);
    return push(std::move(y), [a, df](Tape& t, int self) {
      const Vec& g = t.nodes_[self].grad;
      for (size_t j = 0; j < g.size(); ++j)
        t.nodes_[a].grad[j] += g[j] * df(t.nodes_[a].val[j], t.nodes_[self].val[j]);
    });
  }

  std::vector<Node> nodes_;
};

}  // namespace copse::reftest

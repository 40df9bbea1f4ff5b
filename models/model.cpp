// copse::Model (models/model.h).
#include "models/model.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "common/error.h"
#include "memory/safetensors.h"
#include "models/cells.h"
#include "models/join_head.h"
#include "ops/device.h"

namespace copse {

namespace {

models::SentimentConfig core_config(const ModelConfig& c) {
  models::SentimentConfig s;
  s.vocab = c.vocab;
  s.embed = c.embed;
  s.hidden = c.hidden;
  s.classes = c.head.width;
  s.loss = c.head.loss;
  s.head_linear = c.head.linear;
  s.features = c.features;
  s.embed_init = c.embed_init;
  return s;
}

std::unique_ptr<ops::Backend<float>> backend_for(const ModelConfig& c) {
  if (c.threads <= 0) fail("model: threads must be positive, got {}", c.threads);
  ops::DeviceOptions d;
  d.device = ops::resolve_device(c.device);
  d.threads = c.threads;
  d.gpu = c.gpu;
  d.tf32 = c.tf32;
  return ops::make_backend(d);
}

const std::string& graph_label(const Graph& g) {
  static const std::string unnamed = "graph";
  return g.name.empty() ? unnamed : g.name;
}

}  // namespace

models::BatchData Batch::data() const {
  models::BatchData d;
  d.features = features.empty() ? nullptr : features.data();
  d.feature_rows = feature_rows;
  d.targets = targets.empty() ? nullptr : targets.data();
  return d;
}

Batch batch_of(const std::vector<const Graph*>& graphs) {
  if (graphs.empty()) fail("batch_of: no graphs");
  Batch b;
  b.graphs = scheduler::make_batch(graphs);
  return b;
}

Batch batch_of(const std::vector<const Example*>& examples, int features, int target_width,
               int arity) {
  if (examples.empty()) fail("batch_of: no examples");
  if (arity < 1) fail("batch_of: arity must be >= 1, got {}", arity);
  // Every graph of every example, example by example: one level loop runs
  // them all.
  std::vector<const Graph*> g;
  for (const Example* e : examples) {
    if (e->num_graphs() != arity)
      fail("{}: an example of {} graphs, the model joins {}", graph_label(e->graph),
           e->num_graphs(), arity);
    g.push_back(&e->graph);
    for (const Graph& m : e->more) g.push_back(&m);
  }
  Batch b;
  b.graphs = scheduler::make_batch(g);
  b.arity = arity;
  auto& gb = b.graphs;
  // first[k]: the batch's graph number of example k's first graph.
  std::vector<int> first(examples.size());
  for (size_t k = 0; k < examples.size(); ++k) first[k] = static_cast<int>(k) * arity;
  if (features > 0) {
    // Row v of example k's features becomes table row offset_k + v, and the
    // vertex reads it through its input id.
    for (size_t k = 0; k < examples.size(); ++k) {
      const Example& e = *examples[k];
      const int n = e.num_vertices();
      if (e.features.size() != static_cast<size_t>(n) * features)
        fail("{}: {} feature values for {} vertices of width {} (need {})", graph_label(e.graph),
             e.features.size(), n, features, static_cast<size_t>(n) * features);
      for (int v = 0; v < n; ++v)
        gb.input[gb.row_of_vertex[gb.vertex_offset[first[k]] + v]] = b.feature_rows + v;
      b.features.insert(b.features.end(), e.features.begin(), e.features.end());
      b.feature_rows += n;
    }
  }
  if (arity > 1) {
    b.join_targets.assign(examples.size() * std::max(target_width, 1), std::nanf(""));
    for (size_t k = 0; k < examples.size(); ++k) {
      const Example& e = *examples[k];
      if (!e.join_at.empty() && e.join_at.size() != static_cast<size_t>(arity))
        fail("{}: join_at names {} vertices for {} graphs", graph_label(e.graph), e.join_at.size(),
             arity);
      for (int j = 0; j < arity; ++j) {
        const Graph& gj = j == 0 ? e.graph : e.more[j - 1];
        int v = e.join_at.empty() || e.join_at[j] < 0 ? -1 : e.join_at[j];
        if (v >= gj.num_vertices())
          fail("{}: join_at[{}] = {}, the graph has {} vertices", graph_label(gj), j, v,
               gj.num_vertices());
        if (v < 0) v = root_of(gj);
        b.join_rows.push_back(gb.row_of_vertex[gb.vertex_offset[first[k] + j] + v]);
      }
      if (!e.targets.empty())
        fail("{}: per-vertex targets, but a join head reads the example's target",
             graph_label(e.graph));
      if (e.target.empty()) continue;  // no loss for this example (prediction)
      if (e.target.size() != static_cast<size_t>(target_width))
        fail("{}: a target of {} values, the head's width is {}", graph_label(e.graph),
             e.target.size(), target_width);
      for (int c = 0; c < target_width; ++c) {
        if (!std::isfinite(e.target[c]))
          fail("{}: target entry {} is not finite ({})", graph_label(e.graph), c, e.target[c]);
        b.join_targets[k * target_width + c] = e.target[c];
      }
    }
    return b;
  }
  if (target_width > 0) {
    b.targets.assign(static_cast<size_t>(gb.num_rows) * target_width, std::nanf(""));
    for (size_t k = 0; k < examples.size(); ++k) {
      const Example& e = *examples[k];
      const int n = e.graph.num_vertices();
      if (e.targets.empty()) continue;
      if (e.targets.size() != static_cast<size_t>(n) * target_width)
        fail("{}: {} target values for {} vertices of width {} (need {}; NaN for none)",
             graph_label(e.graph), e.targets.size(), n, target_width,
             static_cast<size_t>(n) * target_width);
      for (int v = 0; v < n; ++v) {
        const size_t r = gb.row_of_vertex[gb.vertex_offset[k] + v];
        std::copy_n(e.targets.begin() + static_cast<size_t>(v) * target_width, target_width,
                    b.targets.begin() + r * target_width);
      }
    }
  }
  return b;
}

Model::Model(const vertex::VertexFunction& cell, const ModelConfig& cfg)
    : cfg_(cfg), cell_name_(cell.name), cell_(cell) {
  if (cfg.hidden <= 0) fail("model: hidden must be positive, got {}", cfg.hidden);
  if (cfg.vocab > 0 && cfg.embed <= 0) fail("model: embed must be positive, got {}", cfg.embed);
  init(nullptr);
}

Model::Model(const vertex::VertexFunction& cell, const vertex::VertexFunction& join_head,
             const ModelConfig& cfg)
    : cfg_(cfg), cell_name_(cell.name), cell_(cell), join_name_(join_head.name),
      join_(join_head) {
  if (cfg.hidden <= 0) fail("model: hidden must be positive, got {}", cfg.hidden);
  if (cfg.vocab > 0 && cfg.embed <= 0) fail("model: embed must be positive, got {}", cfg.embed);
  arity_ = static_cast<int>(join_head.pulls.size());
  if (arity_ < 2)
    fail("model: the join head '{}' pulls {} inputs; it joins 2 or more graphs (in0, in1, ...)",
         join_head.name, arity_);
  init(&join_);
}

Model::Model(const std::string& cell_name, const std::string& join_head, const ModelConfig& cfg)
    : Model(models::make_cell(cell_name, cfg.features > 0 ? cfg.features : cfg.embed, cfg.hidden),
            models::make_join_head(join_head, cfg.hidden, cfg.head.width), cfg) {
  cell_name_ = cell_name;
  join_name_ = join_head;
}

void Model::init(const vertex::VertexFunction* join_head) {
  backend_ = backend_for(cfg_);
  models::SentimentConfig sc = core_config(cfg_);
  sc.arity = arity_;
  core_ = std::make_unique<models::SentimentModel<float>>(cell_, sc, *backend_, join_head);
  core_->params().init(cfg_.seed);
}

int Model::target_width() const {
  if (arity_ > 1) return cfg_.head.width;
  return cfg_.head.loss == HeadLoss::Squared ? cfg_.head.width : 0;
}

Batch Model::batch(const std::vector<const Example*>& examples) const {
  return batch_of(examples, cfg_.features, target_width(), arity_);
}

double Model::train(const Batch& b, float scale) {
  if (b.arity != arity_)
    fail("model: a batch of examples of {} graphs, the model joins {}", b.arity, arity_);
  if (arity_ > 1)
    return core_->train_tuples(b.graphs, b.join_rows, b.join_targets.data(), scale, b.data());
  return core_->train_batch(b.graphs, scale, b.data());
}

long Model::labelled(const Batch& b) const {
  long n = 0;
  if (arity_ > 1) {
    const size_t w = std::max(cfg_.head.width, 1);
    for (size_t k = 0; k * w < b.join_targets.size(); ++k) n += !std::isnan(b.join_targets[k * w]);
    return n;
  }
  const int tw = target_width();
  if (tw > 0) {
    for (int r = 0; r < b.graphs.num_rows; ++r)
      n += !std::isnan(b.targets[static_cast<size_t>(r) * tw]);
    return n;
  }
  for (int l : b.graphs.label) n += l >= 0;
  return n;
}

Model::Model(const std::string& cell_name, const ModelConfig& cfg)
    : Model(models::make_cell(cell_name, cfg.features > 0 ? cfg.features : cfg.embed, cfg.hidden),
            cfg) {
  cell_name_ = cell_name;
}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

memory::ParamStore<float>& Model::params() { return core_->params(); }

namespace {

Model load_into(const std::string& path, const vertex::VertexFunction* cell,
                const ModelConfig& device) {
  std::map<std::string, std::string> meta;
  auto tensors = memory::load_safetensors(path, &meta);
  auto get = [&](const std::string& k) {
    auto it = meta.find(k);
    if (it == meta.end()) fail("{}: not a copse model (metadata '{}' missing)", path, k);
    return it->second;
  };
  auto get_int = [&](const std::string& k, int fallback) {
    auto it = meta.find(k);
    if (it == meta.end()) return fallback;
    try {
      return std::stoi(it->second);
    } catch (const std::exception&) {
      fail("{}: metadata '{}' is not a number: '{}'", path, k, it->second);
    }
  };
  ModelConfig c = device;
  c.embed = get_int("copse.embed", 0);
  c.hidden = get_int("copse.hidden", 0);
  c.features = get_int("copse.features", 0);
  c.head.width = std::stoi(get("copse.classes"));
  c.head.loss = meta.count("copse.loss") && meta.at("copse.loss") == "squared" ? HeadLoss::Squared
                                                                                : HeadLoss::Softmax;
  c.head.linear = get_int("copse.head_linear", 1) != 0;
  c.vocab = 0;
  for (const auto& t : tensors)
    if (t.name == "embed" && !t.shape.empty()) c.vocab = static_cast<int>(t.shape[0]);
  Vocab vocab;
  if (meta.count("copse.vocab")) {
    std::istringstream in(meta.at("copse.vocab"));
    std::string w;
    int i = 0;
    while (std::getline(in, w))
      if (i++ > 0) vocab.add(w);  // id 0 is <unk>, already present
  }
  const std::string name = meta.count("copse.model") ? meta.at("copse.model") : "tree-lstm";
  auto make = [&]() {
    if (!meta.count("copse.join")) return cell ? Model(*cell, c) : Model(name, c);
    const std::string join = meta.at("copse.join");
    Model j = cell ? Model(*cell, models::make_join_head(join, c.hidden, c.head.width), c)
                   : Model(name, join, c);
    if (get_int("copse.arity", j.arity()) != j.arity())
      fail("{}: metadata copse.arity {} but the join head '{}' joins {}", path,
           meta.at("copse.arity"), join, j.arity());
    return j;
  };
  Model m = make();
  auto& ps = m.params();
  for (const auto& t : tensors) {
    const int id = ps.find(t.name);
    if (id < 0) fail("{}: unexpected tensor '{}' (the cell '{}' has no such parameter)", path,
                     t.name, m.cell_name());
    std::vector<int64_t> want(ps.spec(id).shape.begin(), ps.spec(id).shape.end());
    if (want != t.shape)
      fail("{}: tensor '{}' has shape [{}], the model needs [{}]", path, t.name,
           fmt::join(t.shape, ", "), fmt::join(want, ", "));
    ps.set_host(id, t.data);
  }
  if (static_cast<int>(tensors.size()) != ps.size())
    fail("{}: {} tensors, the model has {} parameters", path, tensors.size(), ps.size());
  m.vocab() = std::move(vocab);
  return m;
}

}  // namespace

Model Model::load(const std::string& path, const ModelConfig& device) {
  return load_into(path, nullptr, device);
}

Model Model::load(const std::string& path, const vertex::VertexFunction& cell,
                  const ModelConfig& device) {
  return load_into(path, &cell, device);
}

void Model::save(const std::string& path, const std::map<std::string, std::string>& metadata) {
  auto& ps = params();
  std::vector<memory::TensorData> ts;
  for (int i = 0; i < ps.size(); ++i) {
    memory::TensorData t;
    t.name = ps.spec(i).name;
    for (int d : ps.spec(i).shape) t.shape.push_back(d);
    t.data = ps.get_host(i);
    ts.push_back(std::move(t));
  }
  std::map<std::string, std::string> meta = metadata;
  std::string words;
  for (int i = 0; i < vocab_.size(); ++i) {
    words += vocab_.token(i);
    words += '\n';
  }
  meta["copse.vocab"] = words;
  meta["copse.cell"] = core_->plan().fn.name;
  meta["copse.model"] = cell_name_;
  meta["copse.embed"] = std::to_string(cfg_.embed);
  meta["copse.hidden"] = std::to_string(cfg_.hidden);
  meta["copse.classes"] = std::to_string(cfg_.head.width);
  meta["copse.features"] = std::to_string(cfg_.features);
  meta["copse.loss"] = cfg_.head.loss == HeadLoss::Squared ? "squared" : "softmax";
  meta["copse.head_linear"] = cfg_.head.linear ? "1" : "0";
  if (arity_ > 1) {
    meta["copse.join"] = join_name_;
    meta["copse.arity"] = std::to_string(arity_);
  }
  memory::save_safetensors(path, ts, meta);
}

void Model::evaluate(const Batch& b, Evaluation& into) {
  if (arity_ == 1) {
    core_->evaluate_batch(b.graphs, into.counts, b.data(), &into.squared);
    return;
  }
  const double loss = core_->evaluate_tuples(b.graphs, b.join_rows, b.join_targets.data(),
                                             nullptr, b.data());
  const long n = labelled(b);
  into.counts.loss += loss;
  into.counts.vertices += n;
  if (cfg_.head.loss == HeadLoss::Squared)
    into.squared.sum += loss, into.squared.entries += n * cfg_.head.width;
}

Evaluation Model::evaluate(const std::vector<const Example*>& examples, int batch) {
  if (batch <= 0) fail("evaluate: batch must be positive, got {}", batch);
  Evaluation e;
  for (size_t i = 0; i < examples.size(); i += batch) {
    std::vector<const Example*> part(examples.begin() + i,
                                     examples.begin() + std::min(examples.size(), i + batch));
    evaluate(this->batch(part), e);
  }
  return e;
}

Evaluation Model::evaluate(const std::vector<const Graph*>& graphs, int batch) {
  if (batch <= 0) fail("evaluate: batch must be positive, got {}", batch);
  Evaluation e;
  for (size_t i = 0; i < graphs.size(); i += batch) {
    std::vector<const Graph*> part(graphs.begin() + i,
                                   graphs.begin() + std::min(graphs.size(), i + batch));
    evaluate(batch_of(part), e);
  }
  return e;
}

std::vector<std::vector<float>> Model::predict_batch(const Batch& b) {
  const int C = cfg_.head.width;
  if (arity_ > 1) {
    std::vector<float> y;
    core_->evaluate_tuples(b.graphs, b.join_rows, b.join_targets.data(), &y, b.data());
    std::vector<std::vector<float>> out;
    for (size_t k = 0; k * C < y.size(); ++k)
      out.emplace_back(y.begin() + k * C, y.begin() + (k + 1) * C);
    return out;
  }
  Evaluation ignored;
  evaluate(b, ignored);
  const auto& gb = b.graphs;
  const long ld = core_->logits_ld();
  std::vector<float> host(static_cast<size_t>(gb.num_rows - 1) * ld + C);
  backend_->download(host.data(), core_->logits(), sizeof(float) * host.size());
  std::vector<std::vector<float>> out;
  for (int g = 0; g < gb.num_graphs; ++g) {
    const int r = gb.root_rows[gb.root_ptr[g]];
    std::vector<float> y(host.begin() + r * ld, host.begin() + r * ld + C);
    if (cfg_.head.loss == HeadLoss::Softmax) {
      const float mx = *std::max_element(y.begin(), y.end());
      double z = 0;
      for (float& v : y) z += (v = std::exp(v - mx));
      for (float& v : y) v = static_cast<float>(v / z);
    }
    out.push_back(std::move(y));
  }
  return out;
}

std::vector<std::vector<float>> Model::predict(const std::vector<const Example*>& examples,
                                               int batch) {
  if (batch <= 0) fail("predict: batch must be positive, got {}", batch);
  std::vector<std::vector<float>> out;
  const int tw = target_width();
  for (size_t i = 0; i < examples.size(); i += batch) {
    std::vector<const Example*> part(examples.begin() + i,
                                     examples.begin() + std::min(examples.size(), i + batch));
    Batch b = this->batch(part);
    if (arity_ == 1 && tw > 0 && b.targets.empty()) b.targets.assign(size_t(b.graphs.num_rows) * tw, std::nanf(""));
    for (auto& y : predict_batch(b)) out.push_back(std::move(y));
  }
  return out;
}

std::vector<std::vector<float>> Model::predict(const std::vector<const Graph*>& graphs, int batch) {
  std::vector<Example> ex(graphs.size());
  for (size_t i = 0; i < graphs.size(); ++i) ex[i].graph = *graphs[i];
  std::vector<const Example*> p;
  for (const auto& e : ex) p.push_back(&e);
  return predict(p, batch);
}

std::unique_ptr<Model> Model::replica(int gpu) const {
  ModelConfig c = cfg_;
  c.gpu = gpu;
  auto m = arity_ > 1 ? std::make_unique<Model>(cell_, join_, c) : std::make_unique<Model>(cell_, c);
  m->cell_name_ = cell_name_;
  m->join_name_ = join_name_;
  copy_state_to(*m);
  return m;
}

void Model::copy_state_to(Model& to) const {
  auto& from = core_->params();
  auto& ps = to.params();
  if (ps.total_elements() != from.total_elements())
    fail("model: copying the state into a model of another layout");
  ps.set_flat_host(-1, from.get_flat_host(-1));
  if (from.has_optimizer()) {
    ps.set_optimizer(from.optimizer());
    for (int k = 0; k < from.optimizer_state_slots(); ++k)
      ps.set_flat_host(k, from.get_flat_host(k));
  }
  ps.set_step_counts(from.step_count(), from.optimizer_steps());
}

}  // namespace copse

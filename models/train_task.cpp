// The tasks of `copse train` (see train_task.h).
#include "models/train_task.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "common/error.h"
#include "models/conllu_reader.h"
#include "models/join_head.h"
#include "models/sequence_reader.h"
#include "models/train_util.h"

namespace copse::models {

namespace fs = std::filesystem;

namespace {

std::vector<Batch> to_batches(const std::vector<LabeledTree>& trees, int batch) {
  std::vector<Batch> out;
  for (size_t i = 0; i < trees.size(); i += batch) {
    std::vector<const Graph*> g;
    for (size_t j = i; j < std::min(trees.size(), i + batch); ++j) g.push_back(&trees[j].graph);
    out.push_back(batch_of(g));
  }
  return out;
}

class SentimentTask : public TrainTask {
 public:
  explicit SentimentTask(const TrainOptions& o) : data_(load_data(o)) {
    if (data_.train.empty()) fail("{}: no training trees", data_.source);
    prepare_inputs(o.model, data_.train, &vocab_, true);
    prepare_inputs(o.model, data_.dev, &vocab_, false);
    prepare_inputs(o.model, data_.test, &vocab_, false);
    dev_ = to_batches(data_.dev, 256);
    test_ = to_batches(data_.test, 256);
  }
  const char* unit() const override { return "trees"; }
  std::size_t train_size() const override { return data_.train.size(); }
  std::string describe() const override {
    long vertices = 0;
    for (const auto& t : data_.train) vertices += t.num_vertices();
    return fmt::format("{} | train {} trees ({} vertices), dev {}, test {}", data_.source,
                       data_.train.size(), vertices, data_.dev.size(), data_.test.size());
  }
  Model make_model(const TrainOptions& o, ModelConfig mc) const override {
    mc.head = Head::softmax(5);
    Model m(o.model, mc);
    m.vocab() = vocab_;
    return m;
  }
  StepResult step(Trainer& t, const std::vector<int>& order, std::size_t begin,
                  std::size_t end) const override {
    return t.step(graphs(order, begin, end));
  }
  std::vector<const Graph*> graphs(const std::vector<int>& order, std::size_t begin,
                                   std::size_t end) const override {
    std::vector<const Graph*> g;
    for (size_t j = begin; j < end; ++j) g.push_back(&data_.train[order[j]].graph);
    return g;
  }
  double evaluate(Trainer& t, Model&, nlohmann::json& m, std::string& line) override {
    const EvalCounts dev = t.evaluate(dev_).counts, test = t.evaluate(test_).counts;
    m["dev_fine"] = dev.fine();
    m["dev_binary"] = dev.binary();
    m["test_fine"] = test.fine();
    m["test_binary"] = test.binary();
    line = fmt::format("dev fine {:.3f} bin {:.3f}  test fine {:.3f} bin {:.3f}", dev.fine(),
                       dev.binary(), test.fine(), test.binary());
    return dev.fine();
  }
  const char* best_name() const override { return "dev fine"; }

 private:
  Dataset data_;
  std::vector<Batch> dev_, test_;
};

class RelatednessTask : public TrainTask {
 public:
  explicit RelatednessTask(const TrainOptions& o) : dir_(o.data_dir) {
    if (o.data_dir.empty())
      fail("--task relatedness needs --data DIR in the SICK layout (DIR/train, DIR/dev, "
           "DIR/test, each with a.toks, a.parents, b.toks, b.parents, sim.txt)");
    if (is_sequence_model(o.model))
      fail("--task relatedness reads dependency trees; '{}' is a sequence cell (use "
           "child-sum-lstm)",
           o.model);
    if (!fs::is_directory(o.data_dir)) fail("{}: not a directory", o.data_dir);
    auto load = [&](const char* split, bool grow, std::vector<Example>& ex,
                    std::vector<double>& scores) {
      SickSplit sp = read_sick_split((fs::path(o.data_dir) / split).string());
      ex = sick_examples(sp, vocab_, grow);
      scores = sp.score;
    };
    load("train", true, train_, train_score_);
    load("dev", false, dev_, dev_score_);
    load("test", false, test_, test_score_);
    if (train_.empty()) fail("{}/train: no pairs", o.data_dir);
  }
  const char* unit() const override { return "pairs"; }
  std::size_t train_size() const override { return train_.size(); }
  std::string describe() const override {
    long vertices = 0;
    for (const auto& e : train_) vertices += e.num_vertices();
    return fmt::format("{} (relatedness) | train {} pairs ({} vertices), dev {}, test {}", dir_,
                       train_.size(), vertices, dev_.size(), test_.size());
  }
  Model make_model(const TrainOptions& o, ModelConfig mc) const override {
    mc.head = Head::softmax(5);
    Model m(o.model, "similarity", mc);
    m.vocab() = vocab_;
    return m;
  }
  StepResult step(Trainer& t, const std::vector<int>& order, std::size_t begin,
                  std::size_t end) const override {
    std::vector<const Example*> b;
    for (size_t j = begin; j < end; ++j) b.push_back(&train_[order[j]]);
    return t.step(b);
  }
  std::vector<const Graph*> graphs(const std::vector<int>&, std::size_t,
                                   std::size_t) const override {
    fail("--task relatedness trains on pairs of trees; the SSP walk takes single trees");
  }
  double evaluate(Trainer&, Model& model, nlohmann::json& m, std::string& line) override {
    double dev_r = 0;
    for (const char* split : {"dev", "test"}) {
      const bool dev = split[0] == 'd';
      const auto& ex = dev ? dev_ : test_;
      const auto& truth = dev ? dev_score_ : test_score_;
      if (ex.empty()) continue;
      const RelatednessScores sc = score_pairs(model, ex, truth);
      const double r = sc.pearson, rho = sc.spearman, mse = sc.mse;
      m[fmt::format("{}_pearson", split)] = r;
      m[fmt::format("{}_spearman", split)] = rho;
      m[fmt::format("{}_mse", split)] = mse;
      line += fmt::format("{}{} r {:.4f} rho {:.4f} mse {:.4f}", line.empty() ? "" : "  ", split, r,
                          rho, mse);
      if (dev) dev_r = r;
    }
    return dev_r;
  }
  const char* best_name() const override { return "dev pearson"; }

 private:
  std::string dir_;
  std::vector<Example> train_, dev_, test_;
  std::vector<double> train_score_, dev_score_, test_score_;
};

}  // namespace

std::unique_ptr<TrainTask> make_task(const TrainOptions& o) {
  if (o.task == "sentiment") return std::make_unique<SentimentTask>(o);
  if (o.task == "relatedness") return std::make_unique<RelatednessTask>(o);
  fail("--task: unknown task '{}' (valid: sentiment, relatedness)", o.task);
}

SickSplit read_sick_split(const std::string& dir) {
  if (!fs::is_directory(dir)) fail("{}: not a directory (a SICK split)", dir);
  auto path = [&](const char* f) { return (fs::path(dir) / f).string(); };
  SickSplit s;
  s.a = read_parents_files(path("a.toks"), path("a.parents"));
  s.b = read_parents_files(path("b.toks"), path("b.parents"));
  if (s.b.size() != s.a.size())
    fail("{}: {} trees, {} has {}", path("b.parents"), s.b.size(), path("a.parents"), s.a.size());
  std::ifstream in(path("sim.txt"));
  if (!in) fail("{}: cannot open", path("sim.txt"));
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    char* end = nullptr;
    const double v = std::strtod(line.c_str(), &end);
    if (line.empty() || end != line.c_str() + line.size() || !(v >= 1 && v <= 5))
      fail("{}:{}: the score '{}' is not a number in [1, 5]", path("sim.txt"), no, line);
    s.score.push_back(v);
  }
  if (s.score.size() != s.a.size())
    fail("{}: {} scores for {} pairs ({})", path("sim.txt"), s.score.size(), s.a.size(),
         path("a.parents"));
  return s;
}

std::vector<Example> sick_examples(SickSplit& s, Vocab& vocab, bool grow_vocab) {
  if (grow_vocab)
    for (const auto* side : {&s.a, &s.b})
      for (const auto& t : *side)
        for (const auto& w : t.token) vocab.add(w);
  std::vector<Example> out(s.a.size());
  for (size_t k = 0; k < s.a.size(); ++k) {
    assign_all_inputs(vocab, s.a[k]);
    assign_all_inputs(vocab, s.b[k]);
    out[k].graph = s.a[k].graph;
    out[k].more = {s.b[k].graph};
    out[k].target = score_distribution(s.score[k], 5);
  }
  return out;
}

RelatednessScores score_pairs(Model& model, const std::vector<Example>& pairs,
                              const std::vector<double>& truth) {
  std::vector<const Example*> p;
  for (const auto& e : pairs) p.push_back(&e);
  std::vector<double> y;
  for (const auto& q : model.predict(p, 256)) {
    double v = 0;
    for (size_t c = 0; c < q.size(); ++c) v += (c + 1.0) * q[c];
    y.push_back(v);
  }
  RelatednessScores s;
  s.pairs = static_cast<long>(y.size());
  for (size_t k = 0; k < y.size(); ++k) s.mse += (y[k] - truth[k]) * (y[k] - truth[k]);
  if (!y.empty()) s.mse /= static_cast<double>(y.size());
  s.pearson = pearson(y, truth);
  s.spearman = spearman(y, truth);
  return s;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  if (x.size() != y.size() || x.size() < 2) return 0.0;
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
}

namespace {
std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<int> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = (i + j) / 2.0 + 1;  // ties: the mean rank
    i = j + 1;
  }
  return r;
}
}  // namespace

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  return pearson(ranks(x), ranks(y));
}

}  // namespace copse::models

// Synthetic compositional sentiment treebank: word lists, labelling rules and
// the seeded generator (rules documented in synthetic_treebank.h).
#include "models/synthetic_treebank.h"

#include <algorithm>
#include <array>
#include <unordered_map>

#include "common/error.h"

namespace copse::models {
namespace {

enum class Kind { kPhrase, kNegator, kIntensifier };

struct WordInfo {
  const char* word;
  Kind kind;
  int polarity;  // for kPhrase
};

constexpr int kMaxScore = 4;
constexpr int kMaxScale = 4;  // clip(4x) == clip(8x) for any integer x in [-4, 4]

// clang-format off
constexpr WordInfo kWords[] = {
  {"good", Kind::kPhrase, 1}, {"nice", Kind::kPhrase, 1}, {"fine", Kind::kPhrase, 1},
  {"pleasant", Kind::kPhrase, 1}, {"decent", Kind::kPhrase, 1}, {"fun", Kind::kPhrase, 1},
  {"charming", Kind::kPhrase, 1}, {"solid", Kind::kPhrase, 1},
  {"great", Kind::kPhrase, 2}, {"excellent", Kind::kPhrase, 2}, {"wonderful", Kind::kPhrase, 2},
  {"brilliant", Kind::kPhrase, 2}, {"superb", Kind::kPhrase, 2}, {"masterful", Kind::kPhrase, 2},
  {"bad", Kind::kPhrase, -1}, {"dull", Kind::kPhrase, -1}, {"weak", Kind::kPhrase, -1},
  {"boring", Kind::kPhrase, -1}, {"bland", Kind::kPhrase, -1}, {"clumsy", Kind::kPhrase, -1},
  {"silly", Kind::kPhrase, -1}, {"messy", Kind::kPhrase, -1},
  {"awful", Kind::kPhrase, -2}, {"terrible", Kind::kPhrase, -2}, {"horrible", Kind::kPhrase, -2},
  {"dreadful", Kind::kPhrase, -2}, {"atrocious", Kind::kPhrase, -2}, {"painful", Kind::kPhrase, -2},
  {"the", Kind::kPhrase, 0}, {"a", Kind::kPhrase, 0}, {"movie", Kind::kPhrase, 0},
  {"film", Kind::kPhrase, 0}, {"plot", Kind::kPhrase, 0}, {"story", Kind::kPhrase, 0},
  {"cast", Kind::kPhrase, 0}, {"director", Kind::kPhrase, 0}, {"script", Kind::kPhrase, 0},
  {"ending", Kind::kPhrase, 0}, {"it", Kind::kPhrase, 0}, {"this", Kind::kPhrase, 0},
  {"was", Kind::kPhrase, 0}, {"is", Kind::kPhrase, 0}, {"and", Kind::kPhrase, 0},
  {"with", Kind::kPhrase, 0}, {"of", Kind::kPhrase, 0}, {"as", Kind::kPhrase, 0},
  {"to", Kind::kPhrase, 0}, {"its", Kind::kPhrase, 0}, {"in", Kind::kPhrase, 0},
  {"scenes", Kind::kPhrase, 0}, {"music", Kind::kPhrase, 0}, {"acting", Kind::kPhrase, 0},
  {"not", Kind::kNegator, 0}, {"never", Kind::kNegator, 0}, {"n't", Kind::kNegator, 0},
  {"very", Kind::kIntensifier, 0}, {"really", Kind::kIntensifier, 0},
  {"extremely", Kind::kIntensifier, 0}, {"truly", Kind::kIntensifier, 0},
  {"so", Kind::kIntensifier, 0},
};
// clang-format on
constexpr int kNumWords = sizeof(kWords) / sizeof(kWords[0]);

// Word groups the generator draws from (probabilities in draw_word).
struct WordGroups {
  std::vector<int> filler, sentiment, negator, intensifier;
  WordGroups() {
    for (int i = 0; i < kNumWords; ++i) {
      const WordInfo& w = kWords[i];
      if (w.kind == Kind::kNegator)
        negator.push_back(i);
      else if (w.kind == Kind::kIntensifier)
        intensifier.push_back(i);
      else if (w.polarity == 0)
        filler.push_back(i);
      else
        sentiment.push_back(i);
    }
  }
};

// The value of a subtree: a phrase score, or an operator x -> clip(sign*scale*x).
struct Value {
  bool is_operator = false;
  int score = 0;  // phrase
  int sign = 1;   // operator
  int scale = 1;  // operator
};

int clip(int s) { return std::clamp(s, -kMaxScore, kMaxScore); }

int label_of(const Value& v) {
  if (v.is_operator) return 2;
  if (v.score <= -3) return 0;
  if (v.score <= -1) return 1;
  if (v.score == 0) return 2;
  if (v.score <= 2) return 3;
  return 4;
}

Value leaf_value(const WordInfo& w) {
  Value v;
  switch (w.kind) {
    case Kind::kPhrase:
      v.score = w.polarity;
      break;
    case Kind::kNegator:
      v.is_operator = true;
      v.sign = -1;
      break;
    case Kind::kIntensifier:
      v.is_operator = true;
      v.scale = 2;
      break;
  }
  return v;
}

Value apply(const Value& op, int score) {
  Value v;
  v.score = clip(op.sign * op.scale * score);
  return v;
}

Value combine(const Value& a, const Value& b) {
  if (a.is_operator && b.is_operator) {
    Value v;
    v.is_operator = true;
    v.sign = a.sign * b.sign;
    v.scale = std::min(a.scale * b.scale, kMaxScale);
    return v;
  }
  if (a.is_operator) return apply(a, b.score);
  if (b.is_operator) return apply(b, a.score);
  Value v;
  v.score = clip(a.score + b.score);
  return v;
}

const std::unordered_map<std::string, int>& word_index() {
  static const std::unordered_map<std::string, int> index = [] {
    std::unordered_map<std::string, int> m;
    for (int i = 0; i < kNumWords; ++i) m.emplace(kWords[i].word, i);
    return m;
  }();
  return index;
}

// SplitMix64: tiny, fast, and the same stream on every platform (unlike the
// std:: distributions).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

int draw_word(Rng& rng, const WordGroups& groups) {
  const double u = rng.uniform();
  const std::vector<int>& group = u < 0.45   ? groups.filler
                                  : u < 0.75 ? groups.sentiment
                                  : u < 0.87 ? groups.negator
                                             : groups.intensifier;
  return group[rng.below(static_cast<int>(group.size()))];
}

// A random binary bracketing of `words`, emitted in post-order.
LabeledTree random_tree(const std::vector<int>& words, Rng& rng) {
  LabeledTree tree;
  scheduler::Graph& g = tree.graph;
  struct Span {
    int lo, hi;  // words [lo, hi)
    int split;   // left part [lo, split), right part [split, hi)
    int left;    // vertex id of the finished left part, -1 until known
  };
  std::vector<Span> stack{{0, static_cast<int>(words.size()), -1, -1}};
  int finished = -1;  // vertex id just finished by a popped span
  while (!stack.empty()) {
    Span& s = stack.back();
    if (s.hi - s.lo == 1) {
      g.child_ptr.push_back(static_cast<int>(g.children.size()));
      finished = g.num_vertices();
      g.input.push_back(-1);
      g.label.push_back(-1);
      tree.token.emplace_back(kWords[words[s.lo]].word);
      stack.pop_back();
    } else if (s.split < 0) {
      s.split = s.lo + 1 + rng.below(s.hi - s.lo - 1);
      stack.push_back({s.lo, s.split, -1, -1});
    } else if (s.left < 0) {
      s.left = finished;
      stack.push_back({s.split, s.hi, -1, -1});
    } else {
      g.children.push_back(s.left);
      g.children.push_back(finished);
      g.child_ptr.push_back(static_cast<int>(g.children.size()));
      finished = g.num_vertices();
      g.input.push_back(-1);
      g.label.push_back(-1);
      tree.token.emplace_back();
      stack.pop_back();
    }
  }
  tree.root = finished;
  return tree;
}

}  // namespace

const std::vector<std::string>& synthetic_words() {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> w;
    for (const WordInfo& info : kWords) w.emplace_back(info.word);
    return w;
  }();
  return words;
}

void label_synthetic_tree(LabeledTree& tree) {
  scheduler::Graph& g = tree.graph;
  const int n = tree.num_vertices();
  const auto& index = word_index();
  std::vector<Value> value(n);
  g.label.assign(n, -1);
  for (int v = 0; v < n; ++v) {
    const int begin = g.child_ptr[v], end = g.child_ptr[v + 1];
    if (begin == end) {
      const auto it = index.find(tree.token[v]);
      if (it == index.end())
        fail("{}: vertex {}: '{}' is not a synthetic-treebank word", g.name, v, tree.token[v]);
      value[v] = leaf_value(kWords[it->second]);
    } else {
      for (int e = begin; e < end; ++e) {
        const int c = g.children[e];
        if (c < 0 || c >= v)
          fail("{}: vertex {}: child {} does not come before its parent", g.name, v, c);
        value[v] = e == begin ? value[c] : combine(value[v], value[c]);
      }
    }
    g.label[v] = label_of(value[v]);
  }
}

std::vector<LabeledTree> make_synthetic_treebank(int n, uint64_t seed,
                                                 const SyntheticOptions& options) {
  if (n < 0) fail("make_synthetic_treebank: n must be >= 0, got {}", n);
  if (options.min_length < 1 || options.max_length < options.min_length)
    fail("make_synthetic_treebank: bad sentence lengths [{}, {}]", options.min_length,
         options.max_length);
  constexpr int kMaxAttempts = 10000;
  static const WordGroups groups;
  Rng rng(seed);
  std::vector<LabeledTree> trees;
  trees.reserve(n);
  std::vector<int> words;
  for (int i = 0; i < n; ++i) {
    const int target = options.balance_root_classes ? rng.below(5) : -1;
    LabeledTree tree;
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      const int length =
          options.min_length + rng.below(options.max_length - options.min_length + 1);
      words.clear();
      for (int k = 0; k < length; ++k) words.push_back(draw_word(rng, groups));
      tree = random_tree(words, rng);
      tree.graph.name = fmt::format("synthetic-{}:{}", seed, i + 1);
      label_synthetic_tree(tree);
      if (target < 0 || tree.graph.label[tree.root] == target) break;
    }
    trees.push_back(std::move(tree));
  }
  return trees;
}

TreebankSplits make_synthetic_splits(uint64_t seed, int num_train, int num_dev, int num_test,
                                     const SyntheticOptions& options) {
  if (num_train < 0 || num_dev < 0 || num_test < 0)
    fail("make_synthetic_splits: split sizes must be >= 0, got {}/{}/{}", num_train, num_dev,
         num_test);
  std::vector<LabeledTree> all =
      make_synthetic_treebank(num_train + num_dev + num_test, seed, options);
  TreebankSplits splits;
  auto take = [&](std::vector<LabeledTree>& out, int begin, int count) {
    out.assign(std::make_move_iterator(all.begin() + begin),
               std::make_move_iterator(all.begin() + begin + count));
  };
  take(splits.train, 0, num_train);
  take(splits.dev, num_train, num_dev);
  take(splits.test, num_train + num_dev, num_test);
  return splits;
}

}  // namespace copse::models

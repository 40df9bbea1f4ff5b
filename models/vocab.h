// Vocab: word <-> id for the leaves of treebank trees, with <unk> at id 0.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "models/ptb_reader.h"

namespace copse::models {

// Words <-> embedding row ids; id 0 is the unknown word.
class Vocab {
 public:
  static constexpr int kUnkId = 0;  // the id of unknown words
  static constexpr const char* kUnkToken = "<unk>";  // the token of id 0

  // Just <unk>.
  Vocab();

  // Every leaf word seen at least min_count times, ordered by count
  // (descending) then by bytes, after <unk>. A literal "<unk>" maps to id 0.
  static Vocab build(const std::vector<LabeledTree>& trees, int min_count = 1);

  // Adds a word if new; returns its id.
  int add(const std::string& token);

  // The word's id, or kUnkId if unknown.
  int lookup(const std::string& token) const;
  // Whether the word has an id of its own.
  bool contains(const std::string& token) const { return ids_.count(token) > 0; }

  // Ids in use, <unk> included.
  int size() const { return static_cast<int>(tokens_.size()); }

  // Throws copse::Error for an id outside [0, size()).
  const std::string& token(int id) const;

  // graph.input[v] = lookup(token[v]) for leaves, -1 for internal vertices.
  void assign_inputs(LabeledTree& tree) const;

  // One word per line, id order, "<unk>" first; written via a temporary file
  // and a rename. load() rejects a missing "<unk>" first line, empty lines and
  // duplicates ("PATH:LINE:1: what") and tolerates "\r\n" endings.
  void save(const std::string& path) const;
  // Reads a file written by save() (see there for its errors).
  static Vocab load(const std::string& path);

 private:
  std::vector<std::string> tokens_;           // [size] id -> word
  std::unordered_map<std::string, int> ids_;  // word -> id
};

}  // namespace copse::models

// PTB bracket-tree reader for SST-style sentiment treebanks: one labelled tree
// per line, e.g. `(3 (2 (2 The) (2 Rock)) (4 ...))`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "scheduler/graph.h"

namespace copse::models {

// One sentence tree. Vertices are in post-order (children before parents,
// left to right, root last); graph.label[v] is the node's label, graph.input
// is -1 everywhere (Vocab::assign_inputs fills the leaves) and graph.name is
// "FILE:LINE".
struct LabeledTree {
  scheduler::Graph graph;  // structure, labels (inputs once a Vocab assigns them)
  std::vector<std::string> token;  // [n] leaf word, empty for internal vertices
  int root = -1;                   // == n-1

  // n, as graph.num_vertices().
  int num_vertices() const { return graph.num_vertices(); }
  // Whether vertex v has no children (a word).
  bool is_leaf(int v) const { return graph.num_children(v) == 0; }
};

// Grammar: tree := '(' LABEL WORD ')' | '(' LABEL tree+ ')'. LABEL is a
// decimal integer in [0, num_labels). WORD is any run of bytes other than
// space, tab, '(' and ')' (UTF-8 passes through untouched). Spaces and tabs
// separate items; one trailing '\r' is ignored. Nodes may have any number of
// subtrees (SST is binary). The parser is iterative, so depth is unlimited.
//
// Errors throw copse::Error "FILE:LINE:COL: what", LINE and COL 1-based, COL
// counted in bytes. COL points at the offending byte: the unexpected ')' or
// text, the first byte of a bad label, the '(' of a node with neither word nor
// subtrees (or a missing label), or one past the last byte for a missing ')'.
LabeledTree parse_ptb_line(std::string_view line, const std::string& file, int line_no,
                           int num_labels = 5);

// Reads one tree per line. Tolerates "\r\n" line endings and a missing final
// newline; rejects an empty (or blank) line anywhere, an empty file and an
// unreadable path ("PATH: cannot open: <strerror>").
std::vector<LabeledTree> read_ptb_file(const std::string& path, int num_labels = 5);

// The tree as one PTB line (no newline): the inverse of parse_ptb_line.
std::string to_ptb(const LabeledTree& tree);

// Writes one tree per line (each line ends in '\n').
void write_ptb_file(const std::string& path, const std::vector<LabeledTree>& trees);

}  // namespace copse::models

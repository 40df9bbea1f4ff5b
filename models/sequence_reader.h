// Sentence-per-line text and PTB trees as chains: the inputs of the sequence
// LSTM/GRU baselines (vertex i's single child is vertex i-1).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "models/ptb_reader.h"
#include "models/vocab.h"

namespace copse::models {

// A chain over `tokens` (at least one): vertex i is token i, its child is
// i-1, the root is the last vertex and carries `label` (-1: none); every
// other label is -1 and every input -1 (assign_all_inputs fills them).
LabeledTree make_token_chain(std::vector<std::string> tokens, int label, const std::string& name);

// One line: `LABEL<TAB>tok tok ...` (LABEL a decimal integer in
// [0, num_labels)) or `tok tok ...` (no TAB: label -1). Tokens are separated
// by spaces or tabs; one trailing '\r' is ignored. graph.name is "FILE:LINE".
// Errors "FILE:LINE:COL: what" (COL 1-based, in bytes): an empty or blank
// line (COL 1), a bad label (COL 1), a label without tokens (COL one past the
// end of the line).
LabeledTree parse_sequence_line(std::string_view line, const std::string& file, int line_no,
                                int num_labels = 5);

// One chain per line; tolerates "\r\n" and a missing final newline; rejects
// blank lines anywhere, an empty file ("FILE:1:1: empty file") and an
// unreadable path.
std::vector<LabeledTree> read_sequence_file(const std::string& path, int num_labels = 5);

// The leaves of a PTB tree, left to right, as a chain labelled with the root's
// label on its last vertex (the SST sequence baseline).
LabeledTree ptb_to_chain(const LabeledTree& tree);
// A PTB file's trees as such chains.
std::vector<LabeledTree> read_ptb_as_chains(const std::string& path, int num_labels = 5);

// For graphs where every vertex carries a word (chains, dependency trees):
// the vocabulary of all tokens (same order as Vocab::build: count, then bytes)
// and input[v] = lookup(token[v]) for every vertex with a token.
Vocab build_vocab_all_tokens(const std::vector<LabeledTree>& trees, int min_count = 1);
// input[v] = vocab.lookup(token[v]) for every vertex with a token (-1 otherwise).
void assign_all_inputs(const Vocab& vocab, LabeledTree& tree);

// Whole file as bytes; "PATH: cannot open: <strerror>" on failure.
std::string read_text_file(const std::string& path);

}  // namespace copse::models

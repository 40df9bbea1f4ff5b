// Dependency trees as LabeledTrees: CoNLL-U files and the SICK layout of Tai
// et al. (2015) (`a.toks` + `a.parents`), for the child-sum Tree-LSTM.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "models/ptb_reader.h"

namespace copse::models {

// A dependency tree: vertex v is word v (0-based, word order), its children
// are its dependents in word order, token[v] is its FORM (every vertex carries
// a word: use assign_all_inputs from models/sequence_reader.h), root is the
// word whose HEAD is 0 and carries the sentence label (-1 if none), every
// other label is -1. graph.name is "FILE:LINE" of the sentence's first line.
//
// CoNLL-U: one line per word, 10 TAB-separated columns (ID FORM LEMMA UPOS
// XPOS FEATS HEAD DEPREL DEPS MISC); `#` lines are comments, `# label = K`
// gives the sentence label (K in [0, num_labels)); multiword-token lines
// (ID `1-2`) and empty nodes (ID `1.1`) are skipped; sentences are separated
// by blank lines, and the last one may end without one. One trailing '\r' per
// line is ignored.
//
// Errors "FILE:LINE:COL: what" (1-based, COL in bytes): wrong column count
// (COL one past the end when too few, the 11th column when too many), a word
// ID that is not the next integer (the ID column), an empty FORM (the FORM
// column), a HEAD that is not an integer or is outside [0, words] (the HEAD
// column), several roots (the HEAD column of the second), no root (the
// sentence's first word line, COL 1), a cycle (the HEAD column of the first
// word on it), a bad `# label` (its value), a sentence of comments only (its
// first line, COL 1), an empty file.
std::vector<LabeledTree> parse_conllu(std::string_view text, const std::string& file,
                                      int num_labels = 5);
// The same over a file ("PATH: cannot open: ..." when unreadable).
std::vector<LabeledTree> read_conllu_file(const std::string& path, int num_labels = 5);

// SICK / Tai et al. layout: line k of `toks_path` holds the words of sentence k
// separated by spaces; line k of `parents_path` the 1-based head of each word
// (0 = root). Errors name the parents file ("PARENTS:LINE:COL") for a count
// mismatch (COL of the first extra head, or one past the end when too few), a
// non-integer or out-of-range head, several roots, no root, a cycle, and a
// file with fewer lines than the other (its line after the last, COL 1);
// an empty toks line is "TOKS:LINE:1: empty line".
LabeledTree parse_parents_line(std::string_view toks, std::string_view parents,
                               const std::string& toks_file, const std::string& parents_file,
                               int line_no);
// Every line of the two files, as above (they must have as many lines).
std::vector<LabeledTree> read_parents_files(const std::string& toks_path,
                                            const std::string& parents_path);

}  // namespace copse::models

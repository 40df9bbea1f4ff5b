// GloVe text-format loader: fills the rows of an embedding table for the
// words of a Vocab, streaming the file (GloVe files are gigabytes).
#pragma once

#include <string>

#include "models/vocab.h"

namespace copse::models {

// Each line of `path` is `word v1 ... vD`, fields separated by spaces or tabs
// ("\r\n" endings and a missing final newline are fine). For every line whose
// word is in `vocab`, writes the D values to row vocab.lookup(word) of `table`
// ([vocab.size(), expected_dim] row-major); rows of other words are left as
// they are (the caller initialises them). A word repeated in the file keeps
// its first vector. Returns how many distinct vocab words were found.
//
// Every line is checked, used or not. Errors throw copse::Error:
//   "PATH: cannot open: <strerror>"
//   "PATH:LINE:COL: expected D values, found K"   (COL: the first extra value,
//                                                  or one past the line's end)
//   "PATH:LINE:COL: expected a number, found 'x'" (COL: that field)
//   "PATH:LINE:1: empty line"
// LINE and COL are 1-based, COL counted in bytes. Words containing spaces (a
// few lines of glove.840B) therefore read as width errors.
int load_glove(const std::string& path, const Vocab& vocab, int expected_dim, float* table);

}  // namespace copse::models

#!/usr/bin/env bash
# Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/<target>/:
# a few small valid inputs and a few near misses each. The files are checked
# in; run this again after changing it.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/corpus"
rm -rf "$dir"
mkdir -p "$dir"/{fuzz_ptb,fuzz_glove,fuzz_safetensors,fuzz_vocab,fuzz_conllu,fuzz_sequence,fuzz_graph_json}

# --- PTB bracket trees -------------------------------------------------------
c="$dir/fuzz_ptb"
printf '(3 (2 (2 The) (2 Rock)) (4 (3 (2 is) (4 great)) (2 .)))\n' > "$c/sst_line"
printf '(1 word)\n(0 (1 a) (2 b) (3 c))\r\n(4 (4 (4 (4 deep))))' > "$c/three_lines_crlf"
printf '(2 (2 caf\xc3\xa9)\t(3 na\xc3\xafve))\n' > "$c/utf8_tabs"
printf '(3 (2 a) (2 b)\n' > "$c/missing_paren"
printf '(7 a)\n' > "$c/bad_label"
printf '(1 a)\n\n(2 b)\n' > "$c/empty_line"
printf '(2 a) b)\n' > "$c/trailing_text"
printf '()\n' > "$c/empty_node"

# --- GloVe text vectors (dimension 3; the fuzzer's vocab: the cat , a été) --
c="$dir/fuzz_glove"
printf 'the 0.1 0.2 0.3\ncat -1 2.5e-3 4\n, 0 0 0\n' > "$c/three_words"
printf 'unknown 1 2 3\r\na\t1\t2\t3\r\nthe 1 2 3' > "$c/crlf_tabs_no_newline"
printf '\xc3\xa9t\xc3\xa9 1e38 -1e-38 nan\n' > "$c/utf8_word"
printf 'the 1 2\n' > "$c/too_few"
printf 'the 1 2 3 4\n' > "$c/too_many"
printf 'cat 1 x 3\n' > "$c/not_a_number"
printf 'the 1 2 3\n\na 1 2 3\n' > "$c/empty_line"
printf 'the 1 2 3\nthe 4 5 6\n' > "$c/repeated_word"

# --- safetensors -------------------------------------------------------------
c="$dir/fuzz_safetensors"
# safetensors FILE HEADER DATA: 8-byte little-endian length, the header padded
# with spaces to a multiple of 8, then DATA (printf escapes).
safetensors() {
  local header="$2"
  while (((${#header} % 8) != 0)); do header+=" "; done
  local n=${#header} le="" i
  for ((i = 0; i < 8; i++)); do le+=$(printf '\\x%02x' $(((n >> (8 * i)) & 255))); done
  { printf "$le"; printf '%s' "$header"; printf "$3"; } > "$c/$1"
}
one='\x00\x00\x80\x3f'
safetensors two_tensors \
  '{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}' \
  "$one$one$one$one$one$one"
safetensors scalar_and_metadata \
  '{"__metadata__":{"vocab":"a b c","embed":"4"},"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}' "$one"
safetensors empty_tensor '{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}' ''
safetensors no_tensors '{}' ''
safetensors wrong_dtype '{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}' "$one"
safetensors overlapping \
  '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' \
  "$one$one"
safetensors past_the_end '{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' "$one"
safetensors not_json '{"w": [1, 2' ''
# Found by fuzz_safetensors: nlohmann::json throws out_of_range, not
# parse_error, for a number that overflows a double.
safetensors number_overflow '{"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}}' "$one"
printf '\xff\xff\xff\xff\xff\xff\xff\x7f{}' > "$c/huge_header_length"
printf '\x08\x00\x00' > "$c/truncated_length"

# --- vocabulary files ----------------------------------------------------------
c="$dir/fuzz_vocab"
printf '<unk>\nthe\ncat\n,\n' > "$c/four_words"
printf '<unk>\r\ncaf\xc3\xa9\r\nword' > "$c/crlf_utf8_no_newline"
printf '<unk>\n' > "$c/unk_only"
printf 'the\n<unk>\n' > "$c/unk_not_first"
printf '<unk>\nthe\nthe\n' > "$c/duplicate"
printf '<unk>\n\nthe\n' > "$c/empty_line"
printf '' > "$c/empty_file"

# --- CoNLL-U; SICK toks + parents (toks, a NUL byte, parents) ---------------
c="$dir/fuzz_conllu"
w() { printf '%s\t%s\t_\t_\t_\t_\t%s\t_\t_\t_\n' "$@"; }
{ printf '# sent_id = 1\n# label = 3\n'; w 1 The 2; w 2 cat 3; w 3 sat 0; w 4 . 3; } > "$c/one_sentence"
{ w 1 a 0; printf '\n# label=1\r\n'; printf '1-2\tdu\t_\t_\t_\t_\t_\t_\t_\t_\r\n'
  w 1 de 2 | sed 's/$/\r/'; w 2 le 0 | sed 's/$/\r/'; printf '2.1\tx\t_\t_\t_\t_\t_\t_\t_\t_'; } \
  > "$c/two_sentences_crlf_multiword"
{ w 1 "caf$(printf '\xc3\xa9')" 0; w 2 "na$(printf '\xc3\xaf')ve" 1; } | head -c -1 > "$c/utf8_no_newline"
{ w 1 a 2; w 2 b 1; } > "$c/cycle"
{ w 1 a 0; w 2 b 0; } > "$c/two_roots"
{ w 1 a 3; w 2 b 0; } > "$c/head_out_of_range"
{ w 1 a 0; w 3 b 1; } > "$c/id_gap"
printf '1\ta\t_\t_\t_\t_\t0\t_\t_\n' > "$c/nine_columns"
printf '# label = 9\n# only comments\n' > "$c/bad_label_comments_only"
printf 'The cat sat .\x002 3 0 3\n' > "$c/sick_pair"
printf 'a b c\nd\n\x003 3 0\n0\n' > "$c/sick_two_lines"
printf 'a  b\x000 0' > "$c/sick_two_roots"
printf 'a b\x002 1' > "$c/sick_cycle"
printf 'a b c\x000 1' > "$c/sick_too_few_heads"

# --- sentence per line (LABEL<TAB>tokens or tokens) ---------------------------
c="$dir/fuzz_sequence"
printf '3\tthe rock is great .\n' > "$c/labelled"
printf 'no label here\r\n0\ta\tb\r\n4\tc' > "$c/mixed_crlf_no_newline"
printf '2\tcaf\xc3\xa9   na\xc3\xafve\t!\n' > "$c/utf8_spaces_tabs"
printf '7\ttoo big\n' > "$c/bad_label"
printf 'x\tnot a number\n' > "$c/label_not_integer"
printf '1\t  \n' > "$c/label_without_tokens"
printf 'a\n\nb\n' > "$c/empty_line"
printf '(3 (2 (2 The) (2 Rock)) (4 (3 (2 is) (4 great)) (2 .)))\n' > "$c/ptb_line"

# --- JSONL feature graphs --------------------------------------------------------
c="$dir/fuzz_graph_json"
printf '%s\n' '{"nodes":[{"feat":[0.5,1],"label":2},{"feat":[-1,2e-3]},{"feat":[0,0],"label":0}],"edges":[[0,2],[1,2]]}' > "$c/tree"
printf '%s\r\n\n%s' '{"nodes":[{"feat":[1]}]}' \
  '{"nodes":[{"feat":[1]},{"feat":[2]},{"feat":[3]}],"edges":[[0,1],[0,2],[1,2]]}' > "$c/dag_crlf_blank_line"
printf '%s\n' '{"nodes":[{"feat":[]},{"feat":[]}],"edges":[[0,1],[0,1]]}' > "$c/no_features_repeated_edge"
printf '%s\n' '{"nodes":[{"feat":[1]},{"feat":[2]}],"edges":[[0,1],[1,0]]}' > "$c/cycle"
printf '%s\n' '{"nodes":[{"feat":[1]}],"edges":[[0,0]]}' > "$c/self_loop"
printf '%s\n' '{"nodes":[{"feat":[1]},{"feat":[1,2]}]}' > "$c/width_differs"
printf '%s\n' '{"nodes":[{"feat":[1]}],"edges":[[0,5]]}' > "$c/edge_out_of_range"
printf '%s\n' '{"nodes":[{"feat":[1],"label":1.5}]}' > "$c/label_not_integer"
printf '%s\n' '{"nodes":[]}' > "$c/no_nodes"
printf '%s\n' '{"nodes":[{"feat":[1,' > "$c/truncated"

# Found by reading the readers, confirmed with the targets (see docs/fuzzing.md):
# an empty FORM was read as a word without a token; a number that overflows a
# double escaped as nlohmann::json::out_of_range; a float overflow became inf;
# the label 2^64-1 wrapped to -1 (no label).
printf '1\t\t_\t_\t_\t_\t0\t_\t_\t_\n' > "$dir/fuzz_conllu/empty_form"
printf '%s\n' '{"nodes":[{"feat":[1e999]}]}' > "$dir/fuzz_graph_json/number_overflow"
printf '%s\n' '{"nodes":[{"feat":[1e39]}]}' > "$dir/fuzz_graph_json/float_overflow"
printf '%s\n' '{"nodes":[{"feat":[1],"label":18446744073709551615}]}' > "$dir/fuzz_graph_json/label_wraps"

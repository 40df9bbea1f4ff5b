// Training checkpoints (see checkpoint.h).
#include "models/checkpoint.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "memory/safetensors.h"

namespace copse::models {

std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

namespace {

std::uint64_t checksum(const std::vector<memory::TensorData>& ts, const std::string& state_json) {
  std::uint64_t h = fnv1a(state_json.data(), state_json.size());
  for (const auto& t : ts) {
    h = fnv1a(t.name.data(), t.name.size(), h);
    h = fnv1a(t.data.data(), t.data.size() * sizeof(float), h);
  }
  return h;
}

}  // namespace

void save_checkpoint(const std::string& path, const TrainState& st) {
  nlohmann::json j;
  j["format"] = "copse-train-state-1";
  j["options"] = st.options;
  j["epoch"] = st.epoch;
  j["next"] = st.next;
  j["order"] = st.order;
  j["rng"] = st.rng;
  j["step"] = st.step;
  j["optimizer_steps"] = st.optimizer_steps;
  j["loss_sum"] = st.loss_sum;
  j["labelled"] = st.labelled;
  j["train_s"] = st.train_s;
  j["best_dev"] = st.best_dev;
  j["best_epoch"] = st.best_epoch;
  j["skipped"] = st.skipped;
  j["metrics"] = st.metrics;
  std::vector<memory::TensorData> ts;
  ts.push_back({"params", {static_cast<int64_t>(st.params.size())}, st.params});
  for (size_t k = 0; k < st.opt_state.size(); ++k)
    ts.push_back({fmt::format("optimizer_state.{}", k),
                  {static_cast<int64_t>(st.opt_state[k].size())},
                  st.opt_state[k]});
  std::string state_json = j.dump();
  std::map<std::string, std::string> meta;
  meta["copse.train_state"] = state_json;
  meta["copse.checksum"] = fmt::format("{:016x}", checksum(ts, state_json));
  memory::save_safetensors(path, ts, meta);
}

TrainState load_checkpoint(const std::string& path) {
  std::map<std::string, std::string> meta;
  auto ts = memory::load_safetensors(path, &meta);
  auto it = meta.find("copse.train_state");
  auto ck = meta.find("copse.checksum");
  if (it == meta.end() || ck == meta.end()) fail("{}: not a copse training checkpoint", path);
  if (ck->second != fmt::format("{:016x}", checksum(ts, it->second)))
    fail("{}: checksum mismatch: the checkpoint is corrupted", path);
  TrainState st;
  try {
    auto j = nlohmann::json::parse(it->second);
    if (j.at("format") != "copse-train-state-1")
      fail("{}: unknown checkpoint format {}", path, j.at("format").dump());
    st.options = j.at("options").get<std::map<std::string, std::string>>();
    st.epoch = j.at("epoch");
    st.next = j.at("next");
    st.order = j.at("order").get<std::vector<int>>();
    st.rng = j.at("rng");
    st.step = j.at("step");
    st.optimizer_steps = j.at("optimizer_steps");
    st.loss_sum = j.at("loss_sum");
    st.labelled = j.at("labelled");
    st.train_s = j.at("train_s");
    st.best_dev = j.at("best_dev");
    st.best_epoch = j.at("best_epoch");
    st.skipped = j.at("skipped");
    st.metrics = j.at("metrics").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad training state: {}", path, e.what());
  }
  for (auto& t : ts) {
    if (t.name == "params") {
      st.params = std::move(t.data);
    } else if (t.name.rfind("optimizer_state.", 0) == 0) {
      size_t k = std::stoul(t.name.substr(16));
      if (k >= st.opt_state.size()) st.opt_state.resize(k + 1);
      st.opt_state[k] = std::move(t.data);
    }
  }
  if (st.params.empty()) fail("{}: checkpoint has no parameters", path);
  return st;
}

}  // namespace copse::models

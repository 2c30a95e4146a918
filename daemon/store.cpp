#include "daemon/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/random.hpp"

namespace swarmnet::daemon {

namespace fs = std::filesystem;

namespace {

constexpr int kSnapshotFormat = 1;
constexpr size_t kCompactAfterLines = 4096;

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::internal, "writing " + path, errno);
    }
    done += static_cast<size_t>(n);
  }
}

template <class T>
json::array dump_table(const Table<T>& t) {
  json::array out;
  for (const auto& [key, e] : t) {
    out.push_back(json::object{{"key", key},
                               {"version", to_json(e.version)},
                               {"deleted", e.deleted},
                               {"deleted_at", e.deleted_at},
                               {"value", to_json(e.value)}});
  }
  return out;
}

}  // namespace

Store::Store(std::string state_dir, int64_t tombstone_seconds)
    : dir_(std::move(state_dir)), tombstone_seconds_(tombstone_seconds) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error(Errc::internal, "cannot create state directory " + dir_ + ": " + ec.message());
  ::chmod(dir_.c_str(), 0700);

  const std::string id_path = dir_ + "/node-id";
  if (auto id = read_file(id_path)) {
    node_id_ = *id;
    while (!node_id_.empty() && (node_id_.back() == '\n' || node_id_.back() == ' ')) node_id_.pop_back();
    if (node_id_.size() != 32) throw Error(Errc::internal, id_path + " does not hold a node id");
  } else {
    node_id_ = random_hex(16);
    write_file_atomically(dir_, "node-id", node_id_ + "\n");
    spdlog::info("new node id {} in {}", node_id_, dir_);
  }

  load();
  compact();
}

Store::~Store() {
  if (journal_fd_ >= 0) ::close(journal_fd_);
}

void Store::load() {
  if (auto snap = read_file(dir_ + "/state.json")) {
    json::value v;
    try {
      v = json_fields::parse(*snap, dir_ + "/state.json");
      const auto& o = json_fields::as_object(v, "snapshot");
      auto format = json_fields::optional_uint(o, "format", 1000).value_or(0);
      if (format != kSnapshotFormat) {
        throw Error(Errc::internal, "unknown snapshot format " + std::to_string(format));
      }
      lamport_ = json_fields::optional_uint(o, "lamport", UINT64_MAX).value_or(0);
      const auto& tables = json_fields::as_object(o.at("tables"), "tables");
      for (const auto& [name, rows] : tables) {
        if (!rows.is_array()) throw Error(Errc::internal, "table " + std::string(name) + " is not an array");
        for (const auto& row : rows.get_array()) {
          json::object line = json_fields::as_object(row, "row");
          line["table"] = name;
          apply_line(line);
        }
      }
    } catch (const std::exception& e) {
      throw Error(Errc::internal, "cannot load " + dir_ + "/state.json: " + e.what());
    }
  }

  const std::string journal = dir_ + "/journal";
  if (auto text = read_file(journal)) {
    std::istringstream in(*text);
    std::string line;
    size_t number = 0;
    bool torn_tail = !text->empty() && text->back() != '\n';
    while (std::getline(in, line)) {
      ++number;
      if (line.empty()) continue;
      try {
        apply_line(json_fields::parse(line, "journal line"));
      } catch (const std::exception& e) {
        if (torn_tail && in.peek() == EOF) {
          spdlog::warn("ignoring torn last journal line {} of {}: {}", number, journal, e.what());
          break;
        }
        throw Error(Errc::internal, "journal " + journal + " line " + std::to_string(number) +
                                        " is corrupt: " + e.what());
      }
    }
  }
}

void Store::apply_line(const json::value& jv) { apply_if_newer(jv, false); }

// Decodes a line fully before touching anything, then applies it if its
// version beats the entry we hold. With validate_only nothing is applied.
bool Store::apply_if_newer(const json::value& jv, bool validate_only) {
  const auto& o = json_fields::as_object(jv, "journal entry");
  const std::string table = json_fields::required_string(o, "table");
  const std::string key = json_fields::required_string(o, "key");
  const json::value* version_value = json_fields::find(o, "version");
  if (!version_value) throw Error(Errc::invalid_argument, "missing field \"version\"");
  Version version;
  from_json(*version_value, version);
  const bool deleted = json_fields::bool_or(o, "deleted", false);
  const int64_t deleted_at =
      static_cast<int64_t>(json_fields::optional_uint(o, "deleted_at", INT64_MAX).value_or(0));

  auto apply = [&](auto& t) -> bool {
    using T = std::decay_t<decltype(t.begin()->second.value)>;
    T value{};
    if (!deleted) {
      const json::value* v = json_fields::find(o, "value");
      if (!v) throw Error(Errc::invalid_argument, "missing field \"value\"");
      from_json(*v, value);
    }
    if (validate_only) return false;
    lamport_ = std::max(lamport_, version.lamport);
    auto it = t.find(key);
    if (it != t.end() && !(version > it->second.version)) return false;  // ours is newer
    auto& e = t[key];
    e.version = version;
    e.deleted = deleted;
    e.deleted_at = deleted_at;
    if (!deleted) e.value = std::move(value);  // a tombstone keeps the last value
    if constexpr (std::is_same_v<T, EndpointRecord>) {
      if (!deleted) note_allocation(e.value);
    }
    return true;
  };
  if (table == "networks") return apply(networks_);
  if (table == "blocks") return apply(blocks_);
  if (table == "endpoints") return apply(endpoints_);
  if (table == "cursors") return apply(cursors_);
  if (table == "services") return apply(services_);
  throw Error(Errc::invalid_argument, "unknown table \"" + table + "\"");
}

size_t Store::merge(const std::vector<Line>& lines) {
  for (const auto& line : lines) {
    apply_if_newer(line, true);
    if (json_fields::required_string(line.as_object(), "table") == "cursors") {
      throw Error(Errc::invalid_argument, "cursors are local to a node and never merged");
    }
  }
  std::string batch;
  std::vector<std::pair<std::string, std::string>> changed;
  for (const auto& line : lines) {
    if (!apply_if_newer(line, false)) continue;
    const auto& o = line.as_object();
    changed.emplace_back(std::string(o.at("table").as_string()), std::string(o.at("key").as_string()));
    batch += json::serialize(line);
    batch += '\n';
  }
  if (!batch.empty()) {
    // One fdatasync for the whole batch: a push/pull brings thousands.
    const std::string path = dir_ + "/journal";
    write_all(journal_fd_, batch, path);
    if (::fdatasync(journal_fd_) != 0) throw_errno(Errc::internal, "fdatasync " + path, errno);
    journal_lines_ += changed.size();
  }
  for (const auto& [table, key] : changed) notify(table, key, nullptr);
  if (journal_lines_ >= kCompactAfterLines) compact();
  return changed.size();
}

std::vector<Store::Line> Store::replicated_entries() const {
  std::vector<Line> out;
  auto add = [&](const char* name, const auto& t) {
    for (const auto& [key, e] : t) {
      json::object line{{"table", name},
                        {"key", key},
                        {"version", to_json(e.version)},
                        {"deleted", e.deleted},
                        {"deleted_at", e.deleted_at}};
      if (!e.deleted) line["value"] = to_json(e.value);
      out.push_back(std::move(line));
    }
  };
  add("networks", networks_);
  add("blocks", blocks_);
  add("endpoints", endpoints_);
  add("services", services_);
  return out;
}

size_t Store::add_change_listener(ChangeListener listener) {
  listeners_.emplace(next_listener_, std::move(listener));
  return next_listener_++;
}

void Store::remove_change_listener(size_t id) { listeners_.erase(id); }

void Store::notify(const std::string& table, const std::string& key, const Line* local) {
  // A copy: a listener may add or remove listeners while we iterate.
  auto listeners = listeners_;
  for (auto& [id, listener] : listeners) listener(table, key, local);
}

json::value Store::snapshot() const {
  return json::object{{"format", kSnapshotFormat},
                      {"node_id", node_id_},
                      {"lamport", lamport_},
                      {"tables", json::object{{"networks", dump_table(networks_)},
                                              {"blocks", dump_table(blocks_)},
                                              {"endpoints", dump_table(endpoints_)},
                                              {"services", dump_table(services_)},
                                              {"cursors", dump_table(cursors_)}}}};
}

void Store::compact() {
  const int64_t horizon = now_seconds() - tombstone_seconds_;
  auto reap = [&](auto& t) {
    std::erase_if(t, [&](const auto& kv) { return kv.second.deleted && kv.second.deleted_at < horizon; });
  };
  reap(networks_);
  reap(blocks_);
  reap(endpoints_);
  reap(services_);
  reap(cursors_);

  write_file_atomically(dir_, "state.json", json::serialize(snapshot()) + "\n");
  // The snapshot now holds everything; an empty journal replaces the old one.
  if (journal_fd_ >= 0) ::close(journal_fd_);
  write_file_atomically(dir_, "journal", "");
  journal_fd_ = ::open((dir_ + "/journal").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (journal_fd_ < 0) throw_errno(Errc::internal, "opening " + dir_ + "/journal", errno);
  journal_lines_ = 0;
}

void Store::append_journal(const json::value& line) {
  const std::string path = dir_ + "/journal";
  write_all(journal_fd_, json::serialize(line) + "\n", path);
  if (::fdatasync(journal_fd_) != 0) throw_errno(Errc::internal, "fdatasync " + path, errno);
  ++journal_lines_;
}

template <class T>
Version Store::write(const char* table, Table<T>& t, const std::string& key, const T* value) {
  Version v{++lamport_, node_id_};
  json::object line{{"table", table}, {"key", key}, {"version", to_json(v)}, {"deleted", value == nullptr}};
  int64_t deleted_at = 0;
  if (value) {
    line["value"] = to_json(*value);
  } else {
    deleted_at = now_seconds();
    line["deleted_at"] = deleted_at;
  }
  // Durable first: if the journal write fails, memory is unchanged.
  const json::value line_value = line;
  append_journal(line_value);
  auto& e = t[key];
  e.version = v;
  e.deleted = value == nullptr;
  e.deleted_at = deleted_at;
  if (value) e.value = *value;
  if constexpr (std::is_same_v<T, EndpointRecord>) {
    if (value) note_allocation(*value);
  }
  notify(table, key, &line_value);
  if (journal_lines_ >= kCompactAfterLines) compact();
  return v;
}

// The round-robin cursor is implied by the journal: the last address this
// node allocated in a network is the one in its latest endpoint line, so no
// separate (second fsync) write is needed per allocation.
void Store::note_allocation(const EndpointRecord& e) {
  if (e.node != node_id_) return;
  cursors_[e.network_id].value = CursorRecord{e.network_id, e.ip};
}

Version Store::put(const NetworkRecord& r) { return write("networks", networks_, r.id, &r); }
Version Store::put(const BlockRecord& r) {
  return write("blocks", blocks_, block_key(r.network_id, r.block), &r);
}
Version Store::put(const EndpointRecord& r) {
  return write("endpoints", endpoints_, endpoint_key(r.network_id, r.node, r.container_id, r.ifname), &r);
}

Version Store::put(const ServiceRecord& r) { return write("services", services_, r.id, &r); }
Version Store::erase_service(const std::string& id) {
  return write<ServiceRecord>("services", services_, id, nullptr);
}
const ServiceRecord* Store::find_service(const std::string& id) const {
  auto it = services_.find(id);
  return it == services_.end() || it->second.deleted ? nullptr : &it->second.value;
}
const ServiceRecord* Store::find_service_by_name(const std::string& name) const {
  for (const auto& [id, e] : services_) {
    if (!e.deleted && e.value.name == name) return &e.value;
  }
  return nullptr;
}

Version Store::erase_network(const std::string& id) {
  return write<NetworkRecord>("networks", networks_, id, nullptr);
}
Version Store::erase_block(const std::string& key) {
  return write<BlockRecord>("blocks", blocks_, key, nullptr);
}
Version Store::erase_endpoint(const std::string& key) {
  return write<EndpointRecord>("endpoints", endpoints_, key, nullptr);
}

const NetworkRecord* Store::find_network(const std::string& id) const {
  auto it = networks_.find(id);
  return it == networks_.end() || it->second.deleted ? nullptr : &it->second.value;
}

const NetworkRecord* Store::find_ingress_network() const {
  for (const auto& [id, e] : networks_) {
    if (!e.deleted && e.value.ingress) return &e.value;
  }
  return nullptr;
}

const NetworkRecord* Store::find_network_by_name(const std::string& name) const {
  for (const auto& [id, e] : networks_) {
    if (!e.deleted && e.value.name == name) return &e.value;
  }
  return nullptr;
}

const EndpointRecord* Store::find_endpoint(const std::string& key) const {
  auto it = endpoints_.find(key);
  return it == endpoints_.end() || it->second.deleted ? nullptr : &it->second.value;
}

}  // namespace swarmnet::daemon

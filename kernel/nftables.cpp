#include "kernel/nftables.hpp"

#include <nftables/libnftables.h>

#include <utility>

#include "common/error.hpp"

namespace swarmnet::kernel {
namespace {

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// nft reports failures as text only; the kernel's errno is part of it
// ("Could not process rule: File exists"), so classify by those phrases.
Errc classify(const std::string& message) {
  auto has = [&](std::string_view phrase) { return message.find(phrase) != std::string::npos; };
  if (has("Operation not permitted") || has("you must be root")) return Errc::unavailable;
  if (has("No such file or directory") || has("does not exist")) return Errc::not_found;
  if (has("File exists") || has("Device or resource busy")) return Errc::conflict;
  if (has("syntax error")) return Errc::invalid_argument;
  if (has("Could not process rule")) return Errc::internal;
  // What is left are nft's evaluation errors (a wrong type, a bad
  // expression): the script is at fault.
  return Errc::invalid_argument;
}

}  // namespace

NftContext::NftContext() {
  // NFT_CTX_DEFAULT opens the netlink socket now, in this thread's
  // namespace; that is what binds the context to it. (libnftables exits the
  // process if it cannot open the socket; nothing to catch there.)
  ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx_) throw Error(Errc::internal, "nftables: cannot allocate a libnftables context");
  // Buffered, so that output and errors come back to the caller instead of
  // going to the daemon's stdout/stderr.
  if (nft_ctx_buffer_output(ctx_) != 0 || nft_ctx_buffer_error(ctx_) != 0) {
    nft_ctx_free(ctx_);
    ctx_ = nullptr;
    throw Error(Errc::internal, "nftables: cannot buffer libnftables output");
  }
}

NftContext NftContext::open_in(const Netns& ns) {
  NetnsGuard guard(ns);
  return NftContext();
}

NftContext::NftContext(NftContext&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}

NftContext& NftContext::operator=(NftContext&& other) noexcept {
  if (this != &other) {
    if (ctx_) nft_ctx_free(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
  }
  return *this;
}

NftContext::~NftContext() {
  if (ctx_) nft_ctx_free(ctx_);
}

std::string NftContext::run(std::string_view commands, Output output) {
  if (!ctx_) throw Error(Errc::internal, "nftables: context used after move");
  // libnftables only tries to parse JSON input when JSON output is on (and
  // falls back to nft syntax), so JSON input also means JSON output.
  const size_t first = commands.find_first_not_of(" \t\n");
  const bool json_input = first != std::string_view::npos && commands[first] == '{';
  unsigned flags =
      nft_ctx_output_get_flags(ctx_) & ~unsigned{NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_STATELESS};
  if (output == Output::json || json_input) flags |= NFT_CTX_OUTPUT_JSON;
  if (output == Output::text_stateless) flags |= NFT_CTX_OUTPUT_STATELESS;
  nft_ctx_output_set_flags(ctx_, flags);
  // libnftables parses the whole buffer, then sends every command in one
  // netlink batch: a parse or evaluation error sends nothing, and a kernel
  // error aborts the whole batch.
  const std::string buffer(commands);
  const int rc = nft_run_cmd_from_buffer(ctx_, buffer.c_str());
  // Both buffers are read after every call: reading also rewinds them, so
  // the next call starts empty.
  std::string out = nft_ctx_get_output_buffer(ctx_);
  std::string err = trimmed(nft_ctx_get_error_buffer(ctx_));
  if (rc != 0) {
    if (err.empty()) err = "command failed";
    throw Error(classify(err), "nftables: " + err);
  }
  return out;
}

}  // namespace swarmnet::kernel

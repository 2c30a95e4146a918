// nftables through libnftables (the library behind the `nft` program, fed
// the same syntax, without a process per change). One NftContext is one
// libnftables context and its netlink socket, which is bound to the network
// namespace it was created in: create it inside the namespace to configure
// (open_in(), or under a NetnsGuard) and use it from anywhere afterwards.
//
// Not thread-safe: libnftables keeps process-wide state (its interface
// cache), so use every context of a process from one thread at a time.
#pragma once

#include <string>
#include <string_view>

#include "kernel/netns.hpp"

struct nft_ctx;

namespace swarmnet::kernel {

class NftContext {
 public:
  // text_stateless: without counter values and other state, so that two
  // listings of the same configuration compare equal.
  enum class Output { text, text_stateless, json };

  // A context in the calling thread's network namespace.
  // Throws Error(internal) if libnftables cannot allocate one.
  NftContext();
  // A context in another namespace (enters it on this thread only while the
  // socket is created).
  static NftContext open_in(const Netns& ns);

  NftContext(NftContext&& other) noexcept;
  NftContext& operator=(NftContext&& other) noexcept;
  NftContext(const NftContext&) = delete;
  NftContext& operator=(const NftContext&) = delete;
  ~NftContext();

  // Runs `commands` (nft syntax, several lines; or nft's JSON, recognised
  // by its leading '{') as ONE transaction: the kernel applies every command
  // or none. Returns what nft printed (the listing of a `list` command, as
  // text, or as JSON when asked or when the input was JSON).
  // Throws Error with nft's own message: not_found ("No such file or
  // directory": a missing table, chain, set or element), conflict ("File
  // exists", "Device or resource busy"), invalid_argument (syntax or
  // evaluation errors), unavailable (no permission), internal otherwise.
  std::string run(std::string_view commands, Output output = Output::text);

 private:
  explicit NftContext(struct nft_ctx* ctx) : ctx_(ctx) {}
  struct nft_ctx* ctx_ = nullptr;
};

}  // namespace swarmnet::kernel

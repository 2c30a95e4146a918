// Internal to lb/: the nftables balancer's kernel side, libnftnl messages on
// a libmnl netfilter socket. apply() sends a Plan as ONE netlink batch (one
// transaction: all of it or nothing) and never reads the ruleset; the reads
// are dumps filtered to our table (or to one chain) by the kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lb/nft_plan.hpp"

struct mnl_socket;
struct nlmsghdr;

namespace swarmnet::lb::nft {

class NftSocket {
 public:
  // A netfilter netlink socket in the calling thread's network namespace.
  NftSocket();
  ~NftSocket();
  NftSocket(const NftSocket&) = delete;
  NftSocket& operator=(const NftSocket&) = delete;

  // Sends the plan as one batch (ordered by order_for_batch) and waits
  // for the kernel's verdict. Error with the failing operation and the
  // kernel's message (not_found: something the plan expected is gone;
  // conflict: exists / in use; unavailable: no permission).
  void apply(const Plan& plan);

  // The whole table (dumps of its chains and its three sets, filtered to
  // this table by the kernel).
  TableState read_table();

  // Deletes the table with everything in it; no error if it is missing.
  void delete_table();

 private:
  void dump(int type, ::nlmsghdr* request, int (*callback)(const ::nlmsghdr*, void*),
            void* data, const std::string& what);
  uint32_t next_seq() { return seq_++; }

  struct mnl_socket* sock_ = nullptr;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  std::vector<char> receive_buffer_;
};

}  // namespace swarmnet::lb::nft

// The cluster: this node's membership in the gossip cluster and what rides on
// it. It joins the gossip layer (daemon/gossip) to the daemon's tables:
//   - every local change of a replicated table is broadcast (piggybacked on
//     gossip, a bounded number of retransmits), and every push/pull carries
//     all replicated entries, so the tables converge after any partition;
//   - membership answers the overlay's and the IPAM's "is that node alive,
//     where is it" (daemon/membership.hpp);
//   - address-block requests of the cluster IPAM (BlockExchange) travel as
//     broadcasts; owners answer by writing the new owner into the block table;
//   - the keyring (cluster keys, primary first) is itself versioned state, so
//     a rotation reaches every node by broadcast or, failing that, push/pull.
//   - the default address pools (`cluster init --default-addr-pool`) are
//     versioned state too, set once at init: push/pull carries them, so a
//     node learns them when it joins, before its join returns.
// Cluster settings persist in STATE_DIR/cluster.json, so a restarted daemon
// rejoins by itself. So do every member and its last known state, and when
// this node last saw a majority: a node restarted while cut off remembers
// that it is a minority, and that its lease may have run out.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "daemon/controller.hpp"
#include "daemon/gossip/keyring.hpp"
#include "daemon/gossip/node_thread.hpp"
#include "daemon/push_pull_state.hpp"
#include "daemon/store.hpp"
#include "ipam/subnet_pool.hpp"

namespace swarmnet::daemon {

struct ClusterOptions {
  uint16_t gossip_port = 7946;
  gossip::Config gossip;  // memberlist's LAN timings unless set
  // A node dead (or gone) this long has its address blocks and endpoints
  // taken over by the cluster. A node cut off from a majority stops handing
  // out addresses after half of it (its lease), so by the time the majority
  // reclaims, the lost node has long stopped using those blocks: a block is
  // never used on two live nodes, as long as clocks run at similar speed.
  // The lease survives a restart (cluster.json holds the wall-clock time of
  // the last majority), so restarting does not renew it.
  std::chrono::seconds reclaim_after{24 * 3600};
  // The node with the smallest id among those alive rotates the cluster key
  // (and so the encrypted networks' ESP keys) when the primary key is this
  // old, as swarm does every 12 hours. 0: only `cluster rotate-key`.
  std::chrono::seconds key_rotation_interval{12 * 3600};
  // A key rotation takes each step once every member (left ones aside)
  // holds the keyring of the step before, as its record says, so a member
  // that is down, or restarting, finds the cluster still sealing with a key
  // it holds when it comes back. For a member that does not confirm, the
  // rotation waits this long after it began, then goes on without it: such
  // a node comes back with retired keys only, and must rejoin with a
  // current token (`cluster leave`, then `cluster join`). Down that long is
  // gone for now; the old key should not outlive it.
  std::chrono::seconds key_rotation_wait{15 * 60};
  // Gossip runs on a thread of its own, so a slow kernel transaction or
  // fdatasync on the daemon's thread never delays a probe (a node that
  // answers late is suspected, then declared dead). false: on the daemon's
  // io_context, as before it had one (the unit tests' control).
  bool gossip_thread = true;
};

// "SWMTKN-1-<base64 key>-<ip>:<port>": what `cluster init` prints and
// `cluster join` takes. It carries the secret key: treat it as a password.
struct JoinToken {
  gossip::Keyring::Key key;
  gossip::Address seed;
  std::string str() const;
  static JoinToken parse(const std::string& text);  // Error(invalid_argument)
};

class Cluster final : public Membership, public BlockExchange, public gossip::Delegate {
 public:
  Cluster(boost::asio::io_context& io, Store& store, Controller& controller, std::string state_dir,
          std::string node_name, ClusterOptions options);
  ~Cluster() override;

  // Rejoins the cluster saved in cluster.json, if any.
  void resume();

  struct InitResult {
    std::string token;
    std::vector<std::string> warnings;  // for the operator: pools overlapping this host's routes
  };
  // Starts a new cluster with this node alone. `pools`: where the cluster's
  // networks created without a subnet come from (swarm's defaults without);
  // Error(invalid_argument) if they are invalid or one has no subnet clear
  // of this host's routes. Also makes the routing mesh's network
  // (create_ingress_network, ingress/ingress.hpp). Nothing is started if
  // that fails.
  InitResult init(Ipv4Address advertise, std::optional<Ipv4Prefix> ingress_subnet,
                  std::optional<ipam::AddressPools> pools = std::nullopt);
  // Joins through the token's node. `done` gets an error message or nullopt.
  void join(const std::string& token, Ipv4Address advertise,
            std::function<void(std::optional<std::string>)> done);
  // Tells the others we leave (they see "left"), then stops gossiping.
  void leave(std::function<void()> done);
  // Starts a key rotation: a new key, made primary and then the only one,
  // cluster-wide, each step once every member confirms the one before
  // (ClusterOptions::key_rotation_wait). Error(conflict) while one is under
  // way.
  void rotate_key();
  // Recovery of a cluster that lost its majority for good (swarm's
  // --force-new-cluster): every other member leaves this node's quorum, so
  // this node alone is a majority and may hand out addresses again. Their
  // blocks are reclaimed after the reclaim time, as for any dead node. Only
  // safe when the others are really gone: a live minority elsewhere would
  // now allocate from the same blocks. Returns how many members were dropped.
  size_t force_new_cluster();
  // The operator says a node that is down is gone for good (`swarmnetctl node
  // rm`): its address blocks and the addresses its endpoints hold are freed,
  // and it stops counting in the majority. Refused for this node, a live
  // one, or without a majority in sight. Returns {id, name, released}.
  boost::json::value remove_node(const std::string& name_or_id);

  // Where encrypted networks' SAs are programmed (kept in line with the
  // keyring, the members and the networks once a second).
  void set_encryption(Encryption* encryption) { encryption_ = encryption; }

  bool active() const { return node_ != nullptr; }
  // A member's name, if it is one.
  std::optional<std::string> name_of(const std::string& node_id) const;

  // Told on the daemon's thread, after the change, of every new keyring
  // version a rotation brings (not the keyring a joining node learns). The
  // event stream listens (daemon/events.hpp). Changes of a member's state
  // or address go out on the store's feed (daemon/change_feed.hpp).
  struct Observer {
    // step: "distribute" (a new key is known), "primary" (the primary key
    // changed), "retire" (a key is gone).
    std::function<void(uint64_t version, size_t keys, const std::string& step)> keyring_changed;
  };
  void set_observer(Observer observer) { observer_ = std::move(observer); }

  // The gossip node while the cluster is active (for metrics: its methods
  // are thread-safe), else null.
  const gossip::Node* gossip_node() const { return node_ ? &node_->node() : nullptr; }
  std::string token() const;
  boost::json::value nodes_json() const;
  boost::json::value status_json() const;

  // Membership
  bool is_alive(const std::string& node_id) const override;
  std::optional<Ipv4Address> address_of(const std::string& node_id) const override;
  std::vector<Ipv4Address> underlay_peers() const override;

  // BlockExchange
  void request_block(const std::string& network_id, const std::optional<Ipv4Prefix>& range) override;
  bool may_allocate() const override;

  // gossip::Delegate, called on the gossip thread: each posts its work to
  // the daemon's thread, in the order gossip reported it; push/pull reads
  // the store there (PushPullState).
  void on_member_change(const gossip::Member& m) override;
  void on_user_message(std::span<const uint8_t> data) override;
  std::vector<uint8_t> local_state() override;
  void merge_remote_state(std::span<const uint8_t> data) override;

 private:
  // `remembered`: members saved before a restart, assumed alive for a while.
  // `last_majority`: when a majority was last seen (restored from
  // cluster.json; nullopt: the lease has run out).
  void start(Ipv4Address advertise, std::vector<gossip::Keyring::Key> keys, uint64_t keys_version,
             const std::vector<uint32_t>& generations,
             const std::vector<gossip::Member>& remembered,
             std::optional<std::chrono::steady_clock::time_point> last_majority);
  void stop();
  void save();
  void broadcast(const boost::json::value& message);
  void apply_keyring(const boost::json::value& keyring);
  boost::json::value keyring_json() const;
  // Takes pools of a higher version (a joining node has version 0).
  void apply_address_pools(const boost::json::value& pools);
  boost::json::value address_pools_json() const;
  void handle_message(const boost::json::value& message);
  // The Delegate's work, on the daemon's thread.
  void member_changed(const gossip::Member& m);
  void user_message(std::span<const uint8_t> data);
  void merge_state(std::span<const uint8_t> data);
  // Runs `work` on the daemon's thread, unless this node left the cluster
  // (or stopped gossiping) in the meantime.
  void post_from_gossip(std::function<void()> work);
  // What push/pull sends beside the store's tables (keyring, pools, nodes).
  void refresh_push_pull_records();
  void tell_member_changed(const gossip::Member& m, std::optional<gossip::MemberStatus> before);
  bool sees_majority() const;
  // Alive as gossip itself says (the members assumed alive after a restart
  // do not count towards a majority: that would renew the lease unheard).
  bool confirmed_alive(const std::string& node_id) const;
  std::chrono::seconds lease() const { return options_.reclaim_after / 2; }
  // Once a second: renews the lease while a majority is in sight; the node
  // with the smallest id among those alive reclaims nodes dead too long.
  void housekeeping();
  void schedule_housekeeping();
  // Gives every key of the keyring a generation: `given` (the keyring's
  // message) where it names one, the one already known, else the next.
  void assign_generations(const std::vector<gossip::Keyring::Key>& keys, const std::vector<uint32_t>& given);
  void sync_encryption();
  // This node's record (NodeRecord): rewritten and broadcast when what it
  // says changes; push/pull carries every record known.
  void publish_node_record();
  // Takes another node's record if it is newer than the one known.
  void apply_node_record(const boost::json::value& record);
  // The periodic rotation (ClusterOptions::key_rotation_interval), and the
  // next step of one under way (advance_rotation), by the rotator.
  void maybe_rotate_key();
  // Whether this node is the alive node with the smallest id, which starts
  // the periodic rotation and takes the steps of every rotation.
  bool is_rotator() const;
  // While the keyring holds more than one key (a rotation under way):
  // publishes the next step once every member has confirmed the current
  // keyring, or once the rotation has waited key_rotation_wait.
  void advance_rotation();
  // The members (other than this node and left ones) whose record does not
  // list the current keyring version, by name.
  std::vector<std::string> unconfirmed_keyring() const;
  // Publishes a new keyring version with these keys (primary first): taken
  // here, broadcast to the others.
  void publish_keyring(const std::vector<gossip::Keyring::Key>& keys);

  boost::asio::io_context& io_;
  Store& store_;
  Controller& controller_;
  std::string state_dir_;
  std::string node_name_;
  ClusterOptions options_;
  ChangeFeed::Subscription subscription_;
  Observer observer_;

  std::optional<Ipv4Address> advertise_;
  std::unique_ptr<gossip::Keyring> keyring_;
  uint64_t keys_version_ = 0;
  // The generation of each cluster key (encrypted networks' SPIs carry it),
  // and when the newest was made (unix seconds, 0: unknown).
  std::map<gossip::Keyring::Key, uint32_t> key_generations_;
  int64_t key_created_unix_ = 0;
  // When this node took its current keyring version (a step of a rotation
  // follows the one before by kRotationStep at least), the version it last
  // saved (what its record confirms: it survives a restart), and what the
  // rotation was last logged waiting for.
  std::chrono::steady_clock::time_point keyring_taken_at_{};
  uint64_t saved_keys_version_ = 0;
  std::vector<std::string> rotation_waiting_logged_;
  Encryption* encryption_ = nullptr;
  std::string encryption_error_;  // the last one logged
  NodeRecord self_record_;
  std::map<std::string, NodeRecord> node_records_;  // the others', by node id
  uint64_t pools_version_ = 0;  // 0: not learnt yet (the controller has swarm's defaults)
  std::unique_ptr<gossip::NodeThread> node_;
  // Counts the gossip nodes stopped: work posted by an earlier one is dropped.
  std::atomic<uint64_t> gossip_epoch_{0};
  PushPullState push_pull_{store_};
  std::map<std::string, gossip::Member> members_;  // by node id
  // After a restart, the members saved in cluster.json count as alive until
  // gossip tells otherwise or this deadline passes, so the overlay entries
  // to them are kept (not torn down and rebuilt) across a daemon restart.
  std::map<std::string, std::chrono::steady_clock::time_point> assumed_alive_until_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_block_request_;
  std::map<std::string, std::chrono::steady_clock::time_point> gone_since_;  // dead or left
  // When this node last saw a majority; nullopt: not since its start, and
  // the lease saved before it had run out (or was not saved).
  std::optional<std::chrono::steady_clock::time_point> last_majority_;
  // Its wall-clock time as last written to cluster.json (a restart only
  // knows the wall clock), and whether the lost lease was logged.
  std::optional<std::chrono::steady_clock::time_point> saved_majority_;
  bool lease_lost_logged_ = false;
  std::unique_ptr<boost::asio::steady_timer> housekeeping_timer_;
  struct Retired {  // destroyed in this order: node, then its keyring
    std::unique_ptr<gossip::Keyring> keyring;
    std::unique_ptr<gossip::NodeThread> node;
  };
  std::vector<Retired> retired_;
};

}  // namespace swarmnet::daemon

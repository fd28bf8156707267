#include "perfq/shm/layout.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "perfq/shm/segment.hpp"

namespace perfq::shm {
namespace {

struct Shape {
  uint32_t slots;
  uint32_t payload;
  uint32_t clients;
};

const Shape kShapes[] = {
    {1, 0, 1},       {3, 1, 2},         {16, 64, 4},           {60, 64, 4},
    {100, 4096, 64}, {20000, 4096, 64}, {1u << 20, 100, 1024},
};

TEST(Layout, ComputeGeometryOffsetsAreCacheLineMultiplesInIncreasingOrder) {
  for (const Shape& s : kShapes) {
    const Geometry g = compute_geometry(s.slots, s.payload, s.clients);
    const std::vector<uint64_t> offsets = {g.off_clients,    g.off_client_rings, g.off_band_headers,
                                           g.off_band_cells, g.off_slot_ctl,     g.off_slot_hints,
                                           g.off_slots,      g.total_bytes};
    EXPECT_GE(g.off_clients, sizeof(SegmentHeader));
    for (std::size_t i = 0; i < offsets.size(); ++i) {
      EXPECT_EQ(offsets[i] % kCacheLine, 0u) << "offset " << i << " of " << s.slots << " slots";
      if (i > 0) {
        EXPECT_GT(offsets[i], offsets[i - 1]) << "offset " << i << " of " << s.slots;
      }
    }
  }
}

TEST(Layout, ComputeGeometryRegionsHoldWhatTheyDescribe) {
  for (const Shape& s : kShapes) {
    const Geometry g = compute_geometry(s.slots, s.payload, s.clients);
    EXPECT_EQ(g.slot_count, s.slots);
    EXPECT_EQ(g.slot_payload_bytes, s.payload);
    EXPECT_EQ(g.max_clients, s.clients);
    EXPECT_EQ(g.off_client_rings - g.off_clients, uint64_t{s.clients} * sizeof(ClientRecord));
    EXPECT_EQ(g.off_band_headers - g.off_client_rings,
              uint64_t{s.clients} * g.client_rings_stride());
    EXPECT_EQ(g.off_band_cells - g.off_band_headers, kRingCount * sizeof(BandRingHeader));
    EXPECT_GE(g.off_slot_ctl - g.off_band_cells,
              uint64_t{kBandCount} * g.band_ring_capacity * sizeof(uint64_t));
    EXPECT_GE(g.off_slot_hints - g.off_slot_ctl, uint64_t{s.slots} * sizeof(uint64_t));
    EXPECT_GE(g.off_slots - g.off_slot_hints, (uint64_t{s.slots} + 63) / 64 * sizeof(uint64_t));
    EXPECT_EQ(g.total_bytes - g.off_slots, uint64_t{s.slots} * g.slot.stride);
    EXPECT_EQ(g.slot.stride % kCacheLine, 0u);
    EXPECT_GE(g.slot.stride, sizeof(RequestRecord) + 2 * uint64_t{s.payload});
  }
}

TEST(Layout, RingCapacitiesAreThePowerOfTwoAtOrAboveTheSlotCount) {
  for (const Shape& s : kShapes) {
    const Geometry g = compute_geometry(s.slots, s.payload, s.clients);
    for (uint32_t cap : {g.band_ring_capacity, g.client_ring_capacity}) {
      EXPECT_NE(cap, 0u);
      EXPECT_EQ(cap & (cap - 1), 0u) << cap;
      EXPECT_GE(cap, s.slots);
      EXPECT_LT(cap / 2, s.slots) << "the smallest such power of two";
    }
  }
}

TEST(Layout, LayoutHashIsFixedAtCompileTime) {
  static_assert(layout_hash() != 0);
  static_assert(layout_hash() == layout_hash());
  EXPECT_NE(layout_hash(), 0xcbf2'9ce4'8422'2325ull) << "the hash covers some facts";
}

}  // namespace
}  // namespace perfq::shm

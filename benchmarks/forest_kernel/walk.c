/* Two forest walks over one compact node layout, measured against scikit-learn by run.py (not used by
 * driftloop: see RESULTS.md for why).
 *
 * Every tree is stored in preorder, so a node's left child is the next node; a node is 8 bytes:
 *   inner: thr = the float32 threshold, feat = feature | 0x4000 when a missing value goes left,
 *          right = offset of the right child from this node;
 *   leaf:  thr = +inf, feat = 0xC000, right = the leaf's index within its tree. A step from a leaf stays on
 *          it (v > inf is false, and a missing value "goes left", which for a leaf is offset 0).
 * Leaf values are the tree's class fractions (or value) times the member's weight over its tree count, so
 * one sum over all trees of all forests is the ensemble's forest part.
 */
#include <stdint.h>

typedef struct {
  float thr;
  uint16_t feat;
  uint16_t right;
} node_t;

#define LANES 8 /* independent walks in flight: enough to hide a dependent load chain, few enough for registers */
#define STEPS 4 /* steps between checks for finished walks */

static inline const node_t *step(const node_t *p, const float *x) {
  uint32_t f = p->feat;
  float v = x[f & 0x3fff];
  uint32_t inner = (f >> 15) ^ 1u;
  uint32_t nan_right = (uint32_t)(v != v) & ((f >> 14) ^ 1u) & 1u;
  uint32_t go_right = (uint32_t)(v > p->thr) | nan_right;
  uint32_t r = p->right;
  return p + (inner ^ ((r ^ inner) & (0u - go_right))); /* go_right ? right : (inner ? 1 : 0), no branch */
}

static inline void add_leaf(const double *lv, double *o, int nout) {
  for (int k = 0; k < nout; k++) o[k] += lv[k];
}

/* One row at a time through one tree, then the next row: scikit-learn's loop order, but with a branch-free
 * step, so each step waits for the load before it. */
void walk_rows(const float *X, int64_t n, int nf, const node_t *nodes, const int64_t *roots,
               const int64_t *leafbase, int ntrees, const double *leaves, int nout, double *out, int block) {
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    int64_t b1 = b0 + block < n ? b0 + block : n;
    for (int t = 0; t < ntrees; t++) {
      const node_t *tree = nodes + roots[t];
      const double *tl = leaves + leafbase[t] * nout;
      for (int64_t r = b0; r < b1; r++) {
        const float *x = X + r * nf;
        const node_t *p = tree;
        while (!(p->feat & 0x8000)) p = step(p, x);
        add_leaf(tl + (int64_t)p->right * nout, out + r * nout, nout);
      }
    }
  }
}

/* LANES walks of one tree in flight, each lane taking the next row when its walk ends; the next tree's
 * nodes and leaves are prefetched while this one is walked. */
void walk_lanes(const float *X, int64_t n, int nf, const node_t *nodes, const int64_t *roots,
                const int64_t *leafbase, int ntrees, const double *leaves, int nout, double *out, int block) {
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    int64_t b1 = b0 + block < n ? b0 + block : n;
    for (int t = 0; t < ntrees; t++) {
      const node_t *tree = nodes + roots[t];
      const double *tl = leaves + leafbase[t] * nout;
      if (t + 1 < ntrees) {
        const char *a = (const char *)(nodes + roots[t + 1]), *e = (const char *)(nodes + roots[t + 2]);
        for (; a < e; a += 64) __builtin_prefetch(a, 0, 2);
        a = (const char *)(leaves + leafbase[t + 1] * nout);
        e = (const char *)(leaves + leafbase[t + 2] * nout);
        for (; a < e; a += 64) __builtin_prefetch(a, 0, 2);
      }
      const node_t *nd[LANES];
      const float *xr[LANES];
      int64_t row[LANES], next = b0;
      int live = 0;
      for (int g = 0; g < LANES; g++) {
        row[g] = next < b1 ? next++ : -1;
        live += row[g] >= 0;
        nd[g] = tree;
        xr[g] = X + (row[g] < 0 ? 0 : row[g]) * nf;
      }
      while (live) {
        for (int s = 0; s < STEPS; s++)
          for (int g = 0; g < LANES; g++) nd[g] = step(nd[g], xr[g]);
        for (int g = 0; g < LANES; g++) {
          if (!(nd[g]->feat & 0x8000) || row[g] < 0) continue;
          add_leaf(tl + (int64_t)nd[g]->right * nout, out + row[g] * nout, nout);
          if (next < b1) {
            row[g] = next;
            xr[g] = X + next * nf;
            next++;
            nd[g] = tree;
          } else {
            row[g] = -1;
            live--;
          }
        }
      }
    }
  }
}

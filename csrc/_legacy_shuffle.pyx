# NumPy's legacy RandomState.shuffle of an int64 array, draw for draw: the
# scikit-learn drop-in reproduces each epoch's sklearn.utils.shuffle with it.
#
# RandomState.shuffle calls its MT19937 through a function pointer once a
# draw; here the generator's words are tempered 624 at a time into a buffer
# and consumed in a loop that keeps the position in a register, about half
# the time (docs/dropin.md, "Where the time goes"). The generator's state (key and
# position) is read and written in place, in the layout NumPy's MT19937 has
# had since 1.17; layout_matches() checks that layout against the state
# NumPy reports before shallownet ever writes to it.

from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport uint32_t, int64_t

cdef extern from *:
    """
    #include <stdint.h>
    /* NumPy's bitgen_t (numpy/random/bitgen.h): the state comes first */
    typedef struct { void *state; } sn_bitgen;
    /* NumPy's MT19937 state: the 624 words of the key, then the position */
    #define SN_MT_N 624
    #define SN_MT_M 397
    typedef struct { uint32_t key[SN_MT_N]; int pos; } sn_mt_state;

    /* the next 624 words of the key (the MT19937 recurrence) */
    static void sn_mt_refill(uint32_t *k) {
        int i = 0;
        uint32_t y;
        for (; i < SN_MT_N - SN_MT_M; i++) {
            y = (k[i] & 0x80000000u) | (k[i + 1] & 0x7fffffffu);
            k[i] = k[i + SN_MT_M] ^ (y >> 1) ^ (-(y & 1u) & 0x9908b0dfu);
        }
        for (; i < SN_MT_N - 1; i++) {
            y = (k[i] & 0x80000000u) | (k[i + 1] & 0x7fffffffu);
            k[i] = k[i + SN_MT_M - SN_MT_N] ^ (y >> 1) ^ (-(y & 1u) & 0x9908b0dfu);
        }
        y = (k[SN_MT_N - 1] & 0x80000000u) | (k[0] & 0x7fffffffu);
        k[SN_MT_N - 1] = k[SN_MT_M - 1] ^ (y >> 1) ^ (-(y & 1u) & 0x9908b0dfu);
    }

    /* out[i] = the tempered word i of the key, for i >= from */
    static void sn_mt_temper(const uint32_t *k, int from, uint32_t *out) {
        for (int i = from; i < SN_MT_N; i++) {
            uint32_t y = k[i];
            y ^= y >> 11;
            y ^= (y << 7) & 0x9d2c5680u;
            y ^= (y << 15) & 0xefc60000u;
            y ^= y >> 18;
            out[i] = y;
        }
    }

    /* Fisher-Yates from the end, as RandomState.shuffle: position i
     * (n - 1 down to 1) swaps with j, the first 32-bit draw masked to the
     * smallest all-ones mask >= i that is <= i. Without a branch on the
     * draw (a quarter of them are rejected, at random): a rejected draw
     * swaps a[i] with itself and keeps i, and the mask is set once for all
     * the i it serves (2.1x faster at 20000 rows; docs/dropin.md) */
    static void sn_legacy_shuffle(sn_mt_state *s, int64_t *a, int64_t n) {
        uint32_t out[SN_MT_N];
        int pos = s->pos;
        int64_t i = n - 1;
        if (pos < SN_MT_N)
            sn_mt_temper(s->key, pos, out);
        while (i > 0) {
            uint32_t mask = 0xffffffffu >> __builtin_clz((uint32_t) i);
            int64_t low = (int64_t) (mask >> 1);    /* the mask of every i > low */
            while (i > low) {
                if (pos == SN_MT_N) {
                    sn_mt_refill(s->key);
                    sn_mt_temper(s->key, 0, out);
                    pos = 0;
                }
                int64_t j = (int64_t) (out[pos++] & mask);
                int64_t accept = j <= i;
                int64_t k = accept ? j : i;
                int64_t t = a[i];
                a[i] = a[k];
                a[k] = t;
                i -= accept;
            }
        }
        s->pos = pos;
    }
    """
    ctypedef struct sn_bitgen:
        void *state
    ctypedef struct sn_mt_state:
        uint32_t key[624]
        int pos
    void sn_legacy_shuffle(sn_mt_state *s, int64_t *a, int64_t n) nogil


cdef sn_mt_state *_state(object bit_generator) except NULL:
    return <sn_mt_state *> (<sn_bitgen *> PyCapsule_GetPointer(
        bit_generator.capsule, "BitGenerator")).state


def layout_matches(object bit_generator):
    """Whether the MT19937 ``bit_generator``'s state, read in place as this
    module reads it, is the key and position NumPy reports (reads only)."""
    cdef sn_mt_state *s = _state(bit_generator)
    reported = bit_generator.state["state"]
    key = reported["key"]
    if len(key) != 624 or s.pos != int(reported["pos"]):
        return False
    for i in range(624):
        if s.key[i] != int(key[i]):
            return False
    return True


def shuffle(object bit_generator, int64_t[::1] a):
    """Shuffle ``a`` in place exactly as ``RandomState.shuffle`` does with
    this MT19937 (``layout_matches`` true), advancing it as that does."""
    cdef sn_mt_state *s = _state(bit_generator)
    if a.shape[0] > 0xFFFFFFFF:
        raise ValueError("a: more than 2**32 rows")
    with bit_generator.lock:
        with nogil:
            sn_legacy_shuffle(s, &a[0] if a.shape[0] else NULL, a.shape[0])

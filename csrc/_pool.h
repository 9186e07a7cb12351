/* The Cython kernels' own thread pool (docs/kernels.md, "Threads").
 *
 * Contract: sn_pool_run(pool, fn, arg, n_chunks) calls fn(arg, c, thread) once
 * for every chunk c in [0, n_chunks) and returns when all have returned
 * (jobs of more than SN_POOL_MAX_CHUNKS chunks run on the caller alone).
 * `thread` is in [0, pool->n_threads): 0 for the calling thread, i for
 * worker i, and no two calls running at once share it (per-thread scratch).
 * Which thread runs which chunk is not fixed; the caller makes results
 * independent of it (each chunk writes its own slot, reduced in chunk order).
 *
 * Why not OpenMP: GNU OpenMP's workers spin-wait for the next region, and a
 * child forked after a region hangs in its next one. Here:
 * - chunks are claimed one at a time from an atomic ticket by whichever
 *   thread is free, the caller included, so the caller never waits for a
 *   worker that has not been scheduled: on a busy machine it does the
 *   chunks itself; a thread takes its own chunks (c % n_threads == thread)
 *   first, so consecutive jobs keep each chunk's data on one core;
 * - the caller shares a job only while sharing measures faster: it times
 *   trials of jobs shared and jobs it runs alone, and keeps the faster way
 *   for a while (on a core another process holds, a worker costs more than
 *   it brings); whoever runs a chunk, its result is the same;
 * - a waiting thread spins (pause instructions, for a time: SN_POOL_SPIN_NS
 *   after the last job ended, at most SN_POOL_SPIN_MAX_NS in all) and then
 *   sleeps on a condition variable;
 * - the workers start on the first parallel call, and again in a child
 *   process: a pthread_atfork child handler bumps a fork generation, and a
 *   pool of an older generation is abandoned (its threads do not exist in
 *   the child; its locks may be held) and replaced.
 * One pool belongs to one caller at a time (a Run, a packed L-BFGS loss,
 * or the loss_and_gradients workspace a Python thread keeps); concurrent
 * fits use separate pools.
 */
#ifndef SN_POOL_H
#define SN_POOL_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SN_PAUSE() _mm_pause()
#else
#define SN_PAUSE() ((void) 0)
#endif

/* How long a waiting thread spins before it sleeps, in nanoseconds: after
 * the last job ended, long enough to catch the next one when the caller
 * only takes an optimizer step and gathers a batch in between (~6 us at
 * (20000, 20), h = 100, Adam); in all, long enough to outlast the other
 * chunks of a job, short enough not to hold for long a core someone else
 * needs. Counted in time: a pause instruction took 26 ns on one 2-core AMD
 * EPYC host and 140-210 ns on another, and a count of 100 pauses, tuned on
 * the second, let the worker sleep between every two jobs on the first
 * (docs/kernels.md, "Waiting"). */
#define SN_POOL_SPIN_NS 20000
#define SN_POOL_SPIN_MAX_NS 200000
/* pauses between two reads of the clock */
#define SN_POOL_SPIN_CHECK 8
#define SN_POOL_MAX_THREADS 32
#define SN_POOL_MAX_CHUNKS 32

typedef void (*sn_chunk_fn)(void *arg, Py_ssize_t chunk, int thread);

/* The state the workers see; abandoned (leaked) in a forked child. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* workers: a new job, or shutdown */
    pthread_cond_t finished;    /* caller: the last chunk is done */
    /* generation << 32 | a bit for each chunk not yet claimed; claimed by
     * CAS, so a late worker can never take a chunk of a later job */
    uint64_t ticket;
    int n_chunks;               /* of the current job */
    int done;                   /* chunks finished in the current job */
    int shutdown;
    sn_chunk_fn fn;
    void *arg;
    int n_threads;
    int n_started;              /* workers running: threads 1 .. n_started */
    pthread_t threads[SN_POOL_MAX_THREADS];
} sn_pool_shared;

/* Sharing or not, decided by measurement (docs/kernels.md, "Sharing"):
 * jobs of two or more chunks cycle through a trial of SN_POOL_TRIAL jobs
 * shared, a trial of as many run by the caller alone, and SN_POOL_KEEP jobs
 * run the way whose trial took less time in all, twice as many after each
 * trial that chose as the one before (up to SN_POOL_KEEP_DOUBLINGS times):
 * while the machine stays as it was, ~1% of the jobs run the slower way
 * in trials, not ~6%. */
#define SN_POOL_TRIAL 16
#define SN_POOL_KEEP 240
#define SN_POOL_KEEP_DOUBLINGS 3
/* the first jobs of a trial are not counted: they move to the other core
 * the data the other way left in this one's cache (docs/kernels.md,
 * "Sharing") */
#define SN_POOL_WARMUP 8
enum { SN_TRY_SHARED, SN_TRY_ALONE, SN_KEEP_SHARED, SN_KEEP_ALONE };

typedef struct {
    int n_threads;              /* requested, the caller included */
    unsigned fork_generation;   /* of `shared` */
    sn_pool_shared *shared;     /* NULL until the first parallel job */
    int phase;                  /* SN_TRY_SHARED, ... */
    int left;                   /* jobs left in the phase */
    int streak;                 /* trials in a row that chose as the last one did */
    int last;                   /* the last trial's choice: SN_KEEP_SHARED or _ALONE */
    int64_t trial_ns[2];        /* the two trials' total time: shared, alone */
} sn_pool;

typedef struct {
    sn_pool_shared *shared;
    int thread;
} sn_worker_start;

static unsigned sn_fork_generation = 0;
static pthread_once_t sn_atfork_once = PTHREAD_ONCE_INIT;

static void sn_pool_after_fork_child(void) { sn_fork_generation++; }

static void sn_pool_register_atfork(void) {
    pthread_atfork(NULL, NULL, sn_pool_after_fork_child);
}

static inline int64_t sn_pool_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t) t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The chunks thread `thread` of n_threads takes first: c = thread, thread +
 * n_threads, ... (a bit mask; jobs have at most SN_POOL_MAX_CHUNKS chunks). */
static inline uint32_t sn_pool_own(int thread, int n_threads) {
    uint32_t own = 0;
    for (int c = thread; c < SN_POOL_MAX_CHUNKS; c += n_threads)
        own |= (uint32_t) 1 << c;
    return own;
}

/* Claim a chunk of job `generation`, or -1 when none is left: one of this
 * thread's own chunks while any is unclaimed, else the lowest unclaimed one.
 * Chunk c thus runs on thread c % n_threads whenever that thread is
 * running, so a job that follows another of as many chunks finds its data
 * in the cache of the core that wrote it (docs/kernels.md, "Threads"). */
static inline Py_ssize_t sn_pool_claim(sn_pool_shared *s, uint32_t generation, uint32_t own) {
    uint64_t t = __atomic_load_n(&s->ticket, __ATOMIC_ACQUIRE);
    for (;;) {
        uint32_t left = (uint32_t) t, pick;
        if ((uint32_t) (t >> 32) != generation || left == 0)
            return -1;
        pick = (left & own) ? (left & own) : left;
        pick &= -pick;                      /* its lowest bit */
        if (__atomic_compare_exchange_n(&s->ticket, &t, t & ~(uint64_t) pick, 1,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return (Py_ssize_t) __builtin_ctz(pick);
    }
}

/* Run chunks of the current job until none is left; the thread that
 * finishes the job's last chunk wakes the caller. */
static void sn_pool_work(sn_pool_shared *s, uint32_t generation, int thread) {
    Py_ssize_t c;
    uint32_t own = sn_pool_own(thread, s->n_threads);
    while ((c = sn_pool_claim(s, generation, own)) >= 0) {
        /* the job cannot end before this chunk is done: fn, arg, n_chunks are its own */
        int n = __atomic_load_n(&s->n_chunks, __ATOMIC_ACQUIRE);
        s->fn(s->arg, c, thread);
        if (__atomic_add_fetch(&s->done, 1, __ATOMIC_ACQ_REL) == n && thread != 0) {
            pthread_mutex_lock(&s->lock);
            pthread_cond_signal(&s->finished);
            pthread_mutex_unlock(&s->lock);
        }
    }
}

static void *sn_pool_worker(void *p) {
    sn_worker_start start = *(sn_worker_start *) p;
    sn_pool_shared *s = start.shared;
    uint32_t seen = 0;
    free(p);
    for (;;) {
        uint64_t t = 0;
        int i = 0, fresh = 0;
        int64_t began = sn_pool_now(), idle_since = began, now;
        for (;;) {
            t = __atomic_load_n(&s->ticket, __ATOMIC_ACQUIRE);
            fresh = (uint32_t) (t >> 32) != seen || __atomic_load_n(&s->shutdown, __ATOMIC_ACQUIRE);
            if (fresh)
                break;
            SN_PAUSE();
            if (++i % SN_POOL_SPIN_CHECK)
                continue;
            now = sn_pool_now();
            /* while another thread still runs a chunk of the job, the next job is nearer */
            if (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE)
                < __atomic_load_n(&s->n_chunks, __ATOMIC_ACQUIRE))
                idle_since = now;
            if (now - idle_since > SN_POOL_SPIN_NS || now - began > SN_POOL_SPIN_MAX_NS)
                break;
        }
        if (!fresh) {
            pthread_mutex_lock(&s->lock);
            while ((uint32_t) ((t = __atomic_load_n(&s->ticket, __ATOMIC_ACQUIRE)) >> 32) == seen
                   && !s->shutdown)
                pthread_cond_wait(&s->wake, &s->lock);
            pthread_mutex_unlock(&s->lock);
        }
        if (__atomic_load_n(&s->shutdown, __ATOMIC_ACQUIRE))
            return NULL;
        seen = (uint32_t) (t >> 32);
        sn_pool_work(s, seen, start.thread);
    }
}

/* Stop and join the workers of a pool of this process, free its state. */
static void sn_pool_stop(sn_pool_shared *s) {
    int i;
    pthread_mutex_lock(&s->lock);
    __atomic_store_n(&s->shutdown, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    for (i = 1; i <= s->n_started; i++)
        pthread_join(s->threads[i], NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->finished);
    free(s);
}

/* Start n_threads - 1 workers; NULL (run serially) if nothing could start. */
static sn_pool_shared *sn_pool_start(int n_threads) {
    sigset_t all, old;
    int i;
    sn_pool_shared *s = (sn_pool_shared *) calloc(1, sizeof(sn_pool_shared));
    if (s == NULL)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->finished, NULL);
    /* the workers block every signal: Ctrl-C and friends go to Python's threads */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 1; i < n_threads; i++) {
        sn_worker_start *start = (sn_worker_start *) malloc(sizeof(sn_worker_start));
        if (start == NULL)
            break;
        start->shared = s;
        start->thread = i;
        if (pthread_create(&s->threads[i], NULL, sn_pool_worker, start) != 0) {
            free(start);
            break;
        }
        s->n_started = i;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (s->n_started == 0) {
        sn_pool_stop(s);
        return NULL;
    }
    s->n_threads = s->n_started + 1;
    return s;
}

static void sn_pool_init(sn_pool *pool, int n_threads) {
    pthread_once(&sn_atfork_once, sn_pool_register_atfork);
    if (n_threads > SN_POOL_MAX_THREADS)
        n_threads = SN_POOL_MAX_THREADS;
    pool->n_threads = n_threads < 1 ? 1 : n_threads;
    pool->fork_generation = sn_fork_generation;
    pool->shared = NULL;
    pool->phase = SN_TRY_SHARED;
    pool->left = SN_POOL_TRIAL;
    pool->trial_ns[0] = pool->trial_ns[1] = 0;
    pool->streak = 0;
    pool->last = SN_KEEP_SHARED;
}

/* Account a job of `ns` nanoseconds to the current phase; move on when it ends. */
static void sn_pool_next(sn_pool *pool, int64_t ns) {
    if ((pool->phase == SN_TRY_SHARED || pool->phase == SN_TRY_ALONE)
        && pool->left <= SN_POOL_TRIAL - SN_POOL_WARMUP)
        pool->trial_ns[pool->phase] += ns;
    if (--pool->left > 0)
        return;
    switch (pool->phase) {
    case SN_TRY_SHARED:
        pool->phase = SN_TRY_ALONE;
        pool->left = SN_POOL_TRIAL;
        break;
    case SN_TRY_ALONE:
        pool->phase = pool->trial_ns[0] <= pool->trial_ns[1] ? SN_KEEP_SHARED : SN_KEEP_ALONE;
        pool->streak = pool->phase == pool->last && pool->streak < SN_POOL_KEEP_DOUBLINGS
                       ? pool->streak + 1 : 0;
        pool->last = pool->phase;
        pool->left = SN_POOL_KEEP << pool->streak;
        break;
    default:
        pool->phase = SN_TRY_SHARED;
        pool->left = SN_POOL_TRIAL;
        pool->trial_ns[0] = pool->trial_ns[1] = 0;
    }
}

/* Join the workers (in the process that started them; a forked child
 * only forgets them). */
static void sn_pool_destroy(sn_pool *pool) {
    if (pool->shared != NULL && pool->fork_generation == sn_fork_generation)
        sn_pool_stop(pool->shared);
    pool->shared = NULL;
}

static void sn_pool_run(sn_pool *pool, sn_chunk_fn fn, void *arg, Py_ssize_t n_chunks) {
    sn_pool_shared *s;
    uint32_t generation;
    Py_ssize_t c;
    int i;
    int64_t start, waiting;
    if (pool->n_threads > 1 && n_chunks > 1 && pool->fork_generation != sn_fork_generation) {
        /* a forked child: the workers of this pool stayed in the parent */
        pool->shared = NULL;
        pool->fork_generation = sn_fork_generation;
    }
    if (pool->n_threads > 1 && n_chunks > 1 && pool->shared == NULL)
        pool->shared = sn_pool_start(pool->n_threads);
    s = pool->shared;
    if (s == NULL || n_chunks < 2 || n_chunks > SN_POOL_MAX_CHUNKS) {
        for (c = 0; c < n_chunks; c++)
            fn(arg, c, 0);
        return;
    }
    start = sn_pool_now();
    if (pool->phase == SN_TRY_ALONE || pool->phase == SN_KEEP_ALONE) {
        for (c = 0; c < n_chunks; c++)
            fn(arg, c, 0);
        sn_pool_next(pool, sn_pool_now() - start);
        return;
    }
    s->fn = fn;
    s->arg = arg;
    __atomic_store_n(&s->done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->n_chunks, (int) n_chunks, __ATOMIC_RELAXED);
    generation = (uint32_t) (__atomic_load_n(&s->ticket, __ATOMIC_RELAXED) >> 32) + 1;
    pthread_mutex_lock(&s->lock);
    __atomic_store_n(&s->ticket, ((uint64_t) generation << 32)
                     | (uint32_t) (n_chunks == 32 ? ~0u : (1u << n_chunks) - 1),
                     __ATOMIC_RELEASE);
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    sn_pool_work(s, generation, 0);
    /* the chunks still running are on workers that are running */
    waiting = sn_pool_now();
    for (i = 1; __atomic_load_n(&s->done, __ATOMIC_ACQUIRE) != n_chunks; i++) {
        SN_PAUSE();
        if (i % SN_POOL_SPIN_CHECK == 0 && sn_pool_now() - waiting > SN_POOL_SPIN_MAX_NS)
            break;
    }
    if (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) != n_chunks) {
        pthread_mutex_lock(&s->lock);
        while (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) != n_chunks)
            pthread_cond_wait(&s->finished, &s->lock);
        pthread_mutex_unlock(&s->lock);
    }
    sn_pool_next(pool, sn_pool_now() - start);
}

#endif

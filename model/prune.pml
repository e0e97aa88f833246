/*
 * cairn: lock protocol + two-phase prune, as a Promela model.
 *
 * What is modelled (see docs/concurrency.md for the prose and the invariants):
 *   - lock files (restic format) with acquisition by write-then-recheck, refresh by
 *     replacement (write new, verify old still there, delete old), pre-commit checks,
 *     and release;
 *   - a cairn backup, a restic 0.14 backup (no marks, no pre-commit checks), a cairn
 *     forget (non-exclusive lock), one or two cairn prune runs (sweep due marks under an
 *     exclusive lock, then mark under a non-exclusive "prune" lock), optionally a restic
 *     prune (exclusive, one phase, drops cairn's marks);
 *   - `unlock`, which removes lock files that are stale, and a "suspender" which models
 *     time: it makes a process's lock files old (not refreshed for STALE_AFTER), i.e. the
 *     process was suspended (laptop lid, SIGSTOP: H02) or has crashed.
 *
 * Time abstraction.  A lock file is FRESH while its owner runs and refreshes it.  It
 * becomes OLD only if its owner has not refreshed it for STALE_AFTER (suspended or dead).
 * `unlock` may remove OLD lock files only (assumption A-STALE: the staleness rule is sound).
 * A cairn process that passed its pre-commit check is not frozen long enough for its lock to
 * go OLD before the guarded write completes (assumption A-FREEZE: win[p] blocks suspension).
 * The grace period --keep-delete is NOT relied on: the sweep chooses nondeterministically,
 * per pending pack, whether its mark is old enough, so every value of the grace period,
 * including 0, is covered.
 *
 * Crash.  A cairn process that is suspended and never scheduled again is a crashed process
 * (safety checking explores every finite prefix), so crashes of cairn processes are the
 * suspension transitions plus interleaving.  restic processes never come back from a
 * suspension in the base model: the suspender crashes them (`unless crashed[...]`).
 * -DRESTIC_SUSPEND lets restic 0.14 resume after its lock was broken (its known H02 bug).
 *
 * Data abstraction: 5 blobs (bit masks in a byte), 8 pack slots, 8 index-file slots,
 * 4 snapshot slots.  All backend operations on one file are atomic (backend contract:
 * Save is atomic, List never hides an error), and the backend is read-after-write and
 * list-after-write consistent (assumption A-STORE).
 *
 * Invariants (checked in every reachable state by the monitor, and at every commit):
 *   I1 every blob of every snapshot file is in a pack that exists and is listed in an index file
 *   I2 every pack listed in an index file exists
 *   I3 a process whose lock was never broken finds every pack of its loaded index view, and
 *      every pack it uploaded, still in data/
 *   I4 lock exclusion: two processes whose locks were never broken never hold conflicting locks
 *   I5 no cairn process commits (index write, snapshot write, any deletion) after its lock
 *      was broken
 *
 * Configuration (-D...): FULL adds a second cairn prune run and a restic prune.
 * SWEEP_FULL makes the sweep recompute the used set from every snapshot (default: incremental
 * from the snapshots the mark did not see).  Deliberately broken variants: BUG_*, see below.
 */

#define NB   5     /* blobs b0..b4 */
#define NPK  8     /* pack slots */
#define NIX  12    /* index file slots */
#define NS   4     /* snapshot slots */

/* process ids (indices into the lock arrays) */
#define CB 0       /* cairn backup */
#define RB 1       /* restic 0.14 backup */
#define FG 2       /* cairn forget */
#define PA 3       /* cairn prune run A: sweep, then mark */
#define PB 4       /* cairn prune run B (FULL) */
#define RP 5       /* restic prune (FULL) */
#define NP 6

#ifndef PRUNE_PHASES
#define PRUNE_PHASES 3   /* prune_a: sweep, mark, sweep */
#endif

/* lock file states */
#define NONE  0
#define FRESH 1
#define OLD   2    /* not refreshed for STALE_AFTER: a sound observer may call it stale */

#define BIT(x) (1 << (x))

/* blob contents of the two backups */
#define CB_CONTENT 28   /* b2 b3 b4 */
#define RB_CONTENT 12   /* b2 b3 */

/* ---------------- repository state ---------------- */
byte pk_blobs[NPK];        /* blobs in pack i */
byte pk_exists;            /* data/ listing */
byte npk = 4;              /* next free pack slot */

short ix_exists;           /* index/ listing (bit mask over NIX slots) */
byte ix_packs[NIX];        /* packs listed by index file i ("packs" array) */
byte ix_pend[NIX];         /* packs recorded as pending deletion (cairn_pending) */
byte ix_smark[NIX];        /* snapshots the mark that wrote the entries had seen */
byte ix_keep[96];          /* [file*NPK+pack]: blobs of the pending pack that were used at mark time */
byte nix = 1;              /* next free index slot */

byte sn_exists;            /* snapshots/ listing */
byte sn_blobs[NS];         /* blobs referenced (transitively) by snapshot i */

#ifdef BUG_INCR_BY_TIME
byte ix_mepoch[NIX];       /* "time" of the mark that wrote the file */
byte sn_epoch[NS];         /* "time" field of the snapshot = start of its backup */
byte mark_epoch;           /* the clock */
#endif

/* ---------------- locks ---------------- */
byte lk_cur[NP];           /* the process's current lock file */
byte lk_new[NP];           /* the replacement written during a refresh */
bool lk_excl[NP];          /* lock file says exclusive */
bool lk_prune[NP];         /* lock file says cairn_op=prune-* (cairn prunes exclude each other) */
bool inlock[NP];           /* process has written its lock and not released it */
bool held[NP];             /* process believes it holds its lock */
bool broken[NP];           /* all its lock files were removed by someone else while inlock */
bool win[NP];              /* between a successful pre-commit check and the end of that commit */
bool crashed[NP];          /* restic process crashed (never runs again) */

/* ---------------- what each process relies on (for I3) ---------------- */
bool viewing[NP];
byte view[NP];             /* packs of its loaded index */
byte upl[NP];              /* packs it uploaded */

/* ---------------- helpers ---------------- */

/* c := some other process has a lock file that conflicts with p's */
inline conflict(p, c) {
  c = 0; i = 0;
  do
  :: i < NP ->
     if
     :: i != p && (lk_cur[i] != NONE || lk_new[i] != NONE) &&
        (lk_excl[p] || lk_excl[i] || (lk_prune[p] && lk_prune[i])) -> c = 1
     :: else -> skip
     fi;
     i++
  :: else -> break
  od;
  i = 0
}

/* Acquire: write own lock, (200 ms), recheck: no conflicting lock, own lock still there. */
inline acquire(p, ex, pr, ok) {
  /* The initial list+check before writing (restic does it) only avoids needless writes;
   * omitting it here only adds behaviours (the recheck decides). */
  atomic { lk_excl[p] = ex; lk_prune[p] = pr; lk_cur[p] = FRESH; inlock[p] = 1 };
  d_step {
    conflict(p, c);
    if
    :: c || lk_cur[p] == NONE ->
       lk_cur[p] = NONE; lk_new[p] = NONE; inlock[p] = 0; broken[p] = 0; ok = 0
    :: else -> held[p] = 1; ok = 1
    fi;
    c = 0
  }
}

/* Refresh by replacement: write the new lock file, then delete the old one only if it is
 * still there; if it is gone (broken as stale), the lock is lost: remove the new one. */
inline refresh(p) {
  lk_new[p] = FRESH;                                     /* failpoint lock.refresh.after-new */
#ifdef BUG_REFRESH_NOCHECK
  atomic { lk_cur[p] = FRESH; lk_new[p] = NONE }         /* re-creates a broken lock */
#else
  atomic {
    if
    :: lk_cur[p] != NONE && lk_new[p] != NONE -> lk_cur[p] = lk_new[p]; lk_new[p] = NONE
    :: else -> lk_cur[p] = NONE; lk_new[p] = NONE; held[p] = 0; inlock[p] = 0
    fi
  }
#endif
}

/* Pre-commit check: my current lock file exists and was refreshed recently (FRESH);
 * refresh first if it is old; ok=0 means the lock is lost: abort without committing. */
inline precommit(p, ok) {
#ifdef BUG_NO_PRECOMMIT
  atomic { ok = 1; win[p] = 1 }
#else
  ok = 0;
  do
  :: atomic { held[p] && lk_cur[p] == FRESH -> win[p] = 1; ok = 1 }; break
  :: held[p] && lk_cur[p] == OLD -> refresh(p)
  :: !held[p] || lk_cur[p] == NONE -> break
  od
#endif
}

inline release(p) {
  atomic {
    lk_cur[p] = NONE; lk_new[p] = NONE; inlock[p] = 0; held[p] = 0; broken[p] = 0;
    win[p] = 0; viewing[p] = 0; view[p] = 0; upl[p] = 0
  }
}

/* v := packs listed by the existing index files, F := those files */
inline load_index(v, F) {
  F = ix_exists; v = 0; i = 0;
  do
  :: i < NIX -> if :: F & BIT(i) -> v = v | ix_packs[i] :: else -> skip fi; i++
  :: else -> break
  od;
  i = 0
}

inline blobs_of(m, out) {
  out = 0; i = 0;
  do
  :: i < NPK -> if :: m & BIT(i) -> out = out | pk_blobs[i] :: else -> skip fi; i++
  :: else -> break
  od;
  i = 0
}

inline used_of(sm, out) {
  out = 0; i = 0;
  do
  :: i < NS -> if :: sm & BIT(i) -> out = out | sn_blobs[i] :: else -> skip fi; i++
  :: else -> break
  od;
  i = 0
}

inline alloc_index(f) {
  assert(nix < NIX); f = nix; nix++
}

inline alloc_pack(x) {
  assert(npk < NPK); x = npk; npk++
}

/* ---------------- cairn backup ---------------- */
proctype cairn_backup() {
  byte i, c, v, avail, need, newp, f;
  short F;
  bool ok;
  acquire(CB, 0, 0, ok);
  if :: !ok -> goto done :: else -> skip fi;
#ifdef BUG_INCR_BY_TIME
  sn_epoch[2] = mark_epoch;                 /* snapshot time = start of the backup */
#endif
  /* load the index after taking the lock; dedup only against packs not pending deletion */
  d_step {
    load_index(v, F); view[CB] = v; viewing[CB] = 1;
    F = 0; i = 0;
    do
    :: i < NIX -> if :: ix_exists & BIT(i) -> F = F | ix_pend[i] :: else -> skip fi; i++
    :: else -> break
    od;
    i = 0;
    blobs_of(v & ~F, avail);
    need = CB_CONTENT & ~avail;
    v = 0; F = 0; avail = 0
  };
  if
  :: need != 0 ->
     atomic { alloc_pack(newp); pk_blobs[newp] = need; pk_exists = pk_exists | BIT(newp); upl[CB] = BIT(newp) };
                                                              /* backup.after-pack-upload */
     precommit(CB, ok);
     if :: !ok -> goto abort :: else -> skip fi;
     atomic { assert(!broken[CB]); alloc_index(f); ix_packs[f] = BIT(newp); ix_exists = ix_exists | BIT(f); win[CB] = 0; f = 0 }
                                                              /* backup.after-index-upload */
  :: else -> skip
  fi;
  precommit(CB, ok);                                          /* backup.before-snapshot */
  if :: !ok -> goto abort :: else -> skip fi;
  atomic { assert(!broken[CB]); sn_blobs[2] = CB_CONTENT; sn_exists = sn_exists | BIT(2); win[CB] = 0 }
                                                              /* backup.after-snapshot */
abort:
  release(CB);
done:
  skip
}

/* ---------------- restic 0.14 backup: knows no marks, no pre-commit checks ---------------- */
proctype restic_backup() {
  byte i, c, v, avail, need, newp, f;
  short F;
  bool ok;
  {
    acquire(RB, 0, 0, ok);
    if :: !ok -> goto rdone :: else -> skip fi;
#ifdef BUG_INCR_BY_TIME
    sn_epoch[3] = mark_epoch;
#endif
    d_step {
      load_index(v, F); view[RB] = v; viewing[RB] = 1;
      blobs_of(v, avail);                                   /* dedups against pending packs too */
      need = RB_CONTENT & ~avail;
      v = 0; F = 0; avail = 0
    };
    if
    :: need != 0 ->
       atomic { alloc_pack(newp); pk_blobs[newp] = need; pk_exists = pk_exists | BIT(newp); upl[RB] = BIT(newp) };
       atomic { alloc_index(f); ix_packs[f] = BIT(newp); ix_exists = ix_exists | BIT(f); f = 0 }
    :: else -> skip
    fi;
    atomic { sn_blobs[3] = RB_CONTENT; sn_exists = sn_exists | BIT(3) };
    release(RB);
rdone:
    skip
  } unless { crashed[RB] }
}

/* ---------------- cairn forget: deletes snapshot files only, non-exclusive lock ---------------- */
proctype forget() {
  byte i, c, s;
  bool ok;
  acquire(FG, 0, 0, ok);
  if :: !ok -> goto fdone :: else -> skip fi;
  if
  :: sn_exists & BIT(0) -> s = 0
  :: sn_exists & BIT(1) -> s = 1
  :: sn_exists & BIT(2) -> s = 2
  :: sn_exists & BIT(3) -> s = 3
  :: else -> goto frelease
  fi;
  precommit(FG, ok);                                          /* forget.before-snapshot-delete */
  if :: !ok -> goto frelease :: else -> skip fi;
  atomic { assert(!broken[FG]); sn_exists = sn_exists & ~BIT(s); win[FG] = 0; s = 0 };
                                                              /* forget.after-snapshot-delete */
frelease:
  release(FG);
fdone:
  skip
}

/* ---------------- cairn prune: phase 2 (sweep), then phase 1 (mark) ---------------- */

inline sweep(p) {
  acquire(p, 1, 1, ok);                      /* brief EXCLUSIVE lock, cairn_op=prune-sweep */
  if :: !ok -> goto sw_done :: else -> skip fi;
  /* fresh view under the exclusive lock: snapshots, index, data/ */
  d_step {
    Snow = sn_exists; data = pk_exists;
    load_index(V, F);
    pany = 0; f = 0;
    do
    :: f < NIX -> if :: F & BIT(f) -> pany = pany | ix_pend[f] :: else -> skip fi; f++
    :: else -> break
    od;
    /* an indexed pack is pending only if every index file listing it marks it pending */
    PI = 0; x = 0;
    do
    :: x < NPK ->
       if
       :: (V & pany) & BIT(x) ->
          ok2 = 1; f = 0;
          do
          :: f < NIX ->
             if
             :: (F & BIT(f)) && (ix_packs[f] & BIT(x)) && !(ix_pend[f] & BIT(x)) -> ok2 = 0
             :: else -> skip
             fi;
             f++
          :: else -> break
          od;
          if :: ok2 -> PI = PI | BIT(x) :: else -> skip fi
       :: else -> skip
       fi;
       x++
    :: else -> break
    od;
    PO = pany & ~V;                          /* pending orphans: pending, in no index */
    f = 0; x = 0; ok2 = 0
  };
  if :: (PI | PO) == 0 -> goto sw_release :: else -> skip fi;
  /* which marks are older than --keep-delete: any subset (covers every grace period) */
  atomic {
    AG = 0; x = 0;
    do
    :: x < NPK ->
       if
       :: (PI | PO) & BIT(x) -> if :: AG = AG | BIT(x) :: skip fi
       :: else -> skip
       fi;
       x++
    :: else -> break
    od;
    x = 0
  };
  d_step {
    /* sref = snapshots every relevant mark had seen */
    sref = 255; f = 0;
    do
    :: f < NIX -> if :: (F & BIT(f)) && ix_pend[f] != 0 -> sref = sref & ix_smark[f] :: else -> skip fi; f++
    :: else -> break
    od;
    f = 0;
    blobs_of(V & data, VB);
#ifdef SWEEP_FULL
    used_of(Snow, U);
#else
    used_of(Snow & ~sref, U);                /* only snapshots the marks did not see */
#endif
    cover_ok = ((U & ~VB) == 0);             /* a used blob in no existing indexed pack: abort */
    VB = 0
  };
  if :: !cover_ok -> goto sw_release :: else -> skip fi;
  d_step {
    K = V & data & ~PI;                      /* packs that stay: indexed, present, not pending */
    blobs_of(K, KB);
    DEL = 0; REC = 0; x = 0;
    do
    :: x < NPK ->
       if
       :: PI & BIT(x) ->
          if
          :: !(data & BIT(x)) -> DEL = DEL | BIT(x)      /* listed but missing: drop the entry */
          :: (data & BIT(x)) && !(AG & BIT(x)) -> skip   /* grace period not over */
          :: (data & BIT(x)) && (AG & BIT(x)) ->
             /* blobs of this pack that some snapshot needs */
#ifdef SWEEP_FULL
             used_of(Snow, U);
             need = pk_blobs[x] & U;
#else
             /* keep blobs recorded by the marks + blobs used by snapshots they did not see */
             need = 0; sx = 255; f = 0;
             do
             :: f < NIX ->
                if
                :: (F & BIT(f)) && (ix_pend[f] & BIT(x)) ->
                   need = need | ix_keep[f * NPK + x]; sx = sx & ix_smark[f]
                :: else -> skip
                fi;
                f++
             :: else -> break
             od;
             f = 0;
#ifdef BUG_INCR_BY_TIME
             /* BUG: "new" snapshots chosen by their time field (backup start) being later
              * than the mark's time, instead of by the set of snapshot IDs the mark saw */
             sx = 255; f = 0;
             do
             :: f < NIX ->
                if
                :: (F & BIT(f)) && (ix_pend[f] & BIT(x)) ->
                   s2 = 0;
                   do
                   :: s2 < NS -> if :: sn_epoch[s2] >= ix_mepoch[f] -> sx = sx & ~BIT(s2) :: else -> skip fi; s2++
                   :: else -> break
                   od;
                   s2 = 0
                :: else -> skip
                fi;
                f++
             :: else -> break
             od;
             f = 0;
#endif
             used_of(Snow & ~sx, U);
             need = need | (pk_blobs[x] & U);
             sx = 0;
#endif
#ifdef BUG_ELSEWHERE_PENDING
             /* BUG: "present elsewhere in the index" counts other pending packs */
             blobs_of((V & data) & ~BIT(x), cov);
#else
             cov = KB;
#endif
             if
             :: (need & ~cov) == 0 -> DEL = DEL | BIT(x)
             :: else -> REC = REC | BIT(x); K = K | BIT(x); KB = KB | pk_blobs[x]
             fi;
             need = 0; cov = 0; U = 0
          fi
       :: else -> skip
       fi;
       x++
    :: else -> break
    od;
    x = 0;
    DELO = PO & AG & data;                   /* orphans still in no index, grace over */
    K = 0; KB = 0
  };
  if :: (DEL | DELO | REC) == 0 -> goto sw_release :: else -> skip fi;
  /* new index first: without the deleted packs, recovered packs unmarked */
  precommit(p, ok);
  if :: !ok -> goto sw_release :: else -> skip fi;
  atomic {
    assert(!broken[p]);
    alloc_index(nf);
    ix_packs[nf] = V & ~DEL;
    ix_pend[nf] = (PI & ~DEL & ~REC) | (PO & ~DELO & data);
    ix_smark[nf] = sref;
#ifdef BUG_INCR_BY_TIME
    ix_mepoch[nf] = mark_epoch;
#endif
    x = 0;
    do
    :: x < NPK ->
       if
       :: ix_pend[nf] & BIT(x) ->
          f = 0;
          do
          :: f < NIX ->
             if
             :: (F & BIT(f)) && (ix_pend[f] & BIT(x)) -> ix_keep[nf * NPK + x] = ix_keep[nf * NPK + x] | ix_keep[f * NPK + x]
             :: else -> skip
             fi;
             f++
          :: else -> break
          od
       :: else -> skip
       fi;
       x++
    :: else -> break
    od;
    x = 0; f = 0;
    ix_exists = ix_exists | BIT(nf);
    win[p] = 0
  };                                                          /* prune.sweep.after-new-index */
  precommit(p, ok);
  if :: !ok -> goto sw_release :: else -> skip fi;
  atomic { assert(!broken[p]); ix_exists = ix_exists & ~F; win[p] = 0 };
                                                              /* prune.sweep.after-old-index-delete */
  DEL = DEL | DELO;
  do
  :: DEL == 0 -> break
  :: else ->
     precommit(p, ok);                                        /* prune.sweep.before-pack-delete */
     if :: !ok -> break :: else -> skip fi;
     atomic {
       assert(!broken[p]);
       x = 0;
       do
       :: DEL & BIT(x) -> break
       :: else -> x++
       od;
       pk_exists = pk_exists & ~BIT(x); DEL = DEL & ~BIT(x); x = 0;
       win[p] = 0
     }                                                        /* prune.sweep.mid-pack-delete */
  od;
sw_release:
  release(p);
  d_step { Snow = 0; data = 0; V = 0; F = 0; pany = 0; PI = 0; PO = 0; AG = 0; sref = 0; U = 0;
           cover_ok = 0; DEL = 0; DELO = 0; REC = 0; nf = 0 };
sw_done:
  skip
}

inline mark(p) {
  acquire(p, 0, 1, ok);                      /* non-exclusive, cairn_op=prune-mark */
  if :: !ok -> goto mk_done :: else -> skip fi;
  /* read order: list snapshots before loading the index */
  d_step {
    Snow = sn_exists; used_of(Snow, U)
#ifdef BUG_INCR_BY_TIME
    ; mark_epoch++
#endif
  };
  d_step { load_index(V, F); view[p] = V; viewing[p] = 1 };
  d_step { blobs_of(V, VB); cover_ok = ((U & ~VB) == 0); VB = 0 };
  if :: !cover_ok -> goto mk_release :: else -> skip fi;      /* index incomplete: abort */
  d_step { data = pk_exists; PO = data & ~V };                /* orphans: in data/, in no index */
  d_step {
    K = 0; PI = 0; cov = 0; x = 0;
    do
    :: x < NPK ->
       if
       :: V & BIT(x) ->
          need = pk_blobs[x] & U;
          if
          :: need == pk_blobs[x] -> K = K | BIT(x)                      /* fully used: keep */
          :: need == 0 -> PI = PI | BIT(x); mk[x] = 0                   /* unused: pending */
          :: else -> PI = PI | BIT(x); mk[x] = need; cov = cov | need   /* partly used: repack */
          fi
       :: else -> skip
       fi;
       x++
    :: else -> break
    od;
    x = 0; need = 0;
    blobs_of(K, KB);
    cov = cov & ~KB;                         /* blobs to copy: not already in a kept pack */
    K = 0; KB = 0
  };
  if :: (PI | PO) == 0 -> goto mk_release :: else -> skip fi;
  nf = 255;
  if
  :: cov != 0 ->
     atomic { alloc_pack(nf); pk_blobs[nf] = cov; pk_exists = pk_exists | BIT(nf); upl[p] = BIT(nf); cov = 0 }
                                                              /* prune.mark.after-repack-pack */
  :: else -> skip
  fi;
  precommit(p, ok);
  if :: !ok -> goto mk_release :: else -> skip fi;
  atomic {
    assert(!broken[p]);
    alloc_index(f);
    if :: nf != 255 -> ix_packs[f] = V | BIT(nf) :: else -> ix_packs[f] = V fi;
    ix_pend[f] = PI | PO;
    ix_smark[f] = Snow;
#ifdef BUG_INCR_BY_TIME
    ix_mepoch[f] = mark_epoch;
#endif
    x = 0;
    do
    :: x < NPK -> ix_keep[f * NPK + x] = mk[x]; mk[x] = 0; x++
    :: else -> break
    od;
    x = 0;
    ix_exists = ix_exists | BIT(f);
    f = 0;
    win[p] = 0
  };                                                          /* prune.mark.after-new-index */
  precommit(p, ok);
  if :: !ok -> goto mk_release :: else -> skip fi;
  atomic { assert(!broken[p]); ix_exists = ix_exists & ~F; win[p] = 0 };
                                                              /* prune.mark.after-old-index-delete */
#ifdef BUG_MARK_DELETES_ORPHANS
  precommit(p, ok);
  if :: !ok -> goto mk_release :: else -> skip fi;
  atomic { pk_exists = pk_exists & ~PO; win[p] = 0 };
#endif
mk_release:
  release(p);
  d_step { Snow = 0; data = 0; V = 0; F = 0; PI = 0; PO = 0; U = 0; cover_ok = 0; cov = 0; nf = 0;
           x = 0; do :: x < NPK -> mk[x] = 0; x++ :: else -> break od; x = 0 };
mk_done:
  skip
}

#define PRUNE_LOCALS \
  byte i, c, x, s2, f, nf, Snow, data, V, pany, PI, PO, AG, sref, sx, U, VB, K, KB, DEL, DELO, REC, need, cov; \
  short F; \
  byte mk[NPK]; \
  bool ok, ok2, cover_ok

/* A prune run is: sweep due marks, then mark.  prune_a does PRUNE_PHASES phases in a row
 * (default sweep, mark, sweep), so that the marks it wrote get swept; prune_b (FULL) runs
 * one sweep and one mark concurrently with it. */
proctype prune_a() {
  PRUNE_LOCALS;
  byte phase;
  do
  :: phase < PRUNE_PHASES ->
     if
     :: phase % 2 == 0 -> sweep(PA)
     :: else -> mark(PA)
     fi;
     phase++
  :: else -> break
  od
}

#ifdef FULL
proctype prune_b() {
  PRUNE_LOCALS;
  sweep(PB);
  mark(PB)
}

/* restic prune: exclusive, one phase; deletes unreferenced packs at once; its index rewrite
 * drops cairn_pending; no pre-commit checks (restic 0.14). */
proctype restic_prune() {
  byte i, c, x, f, V, U, data, DEL;
  short F;
  bool ok;
  {
    acquire(RP, 1, 0, ok);
    if :: !ok -> goto rp_done :: else -> skip fi;
    d_step {
      used_of(sn_exists, U); load_index(V, F); data = pk_exists;
      blobs_of(V, x);
      ok = ((U & ~x) == 0); x = 0
    };
    if :: !ok -> goto rp_release :: else -> skip fi;
    atomic { pk_exists = pk_exists & V };                     /* delete unreferenced packs */
    d_step {
      DEL = 0; x = 0;
      do
      :: x < NPK -> if :: (V & BIT(x)) && (pk_blobs[x] & U) == 0 -> DEL = DEL | BIT(x) :: else -> skip fi; x++
      :: else -> break
      od;
      x = 0
    };
    if :: DEL == 0 -> goto rp_release :: else -> skip fi;
    atomic { alloc_index(f); ix_packs[f] = V & ~DEL; ix_pend[f] = 0; ix_smark[f] = 0;
             ix_exists = ix_exists | BIT(f); f = 0 };
    atomic { ix_exists = ix_exists & ~F };
    atomic { pk_exists = pk_exists & ~DEL };
rp_release:
    release(RP);
rp_done:
    skip
  } unless { crashed[RP] }
}
#endif

/* ---------------- unlock: removes stale lock files ---------------- */
#ifdef BUG_UNSOUND_STALE
#define STALE(x) (x != NONE)       /* BUG: clock skew / other PID namespace: fresh locks look stale */
#else
#define STALE(x) (x == OLD)
#endif

#define UNLOCK(q) \
  :: atomic { STALE(lk_cur[q]) -> lk_cur[q] = NONE; \
       if :: inlock[q] && lk_new[q] == NONE -> broken[q] = 1 :: else -> skip fi } \
  :: atomic { STALE(lk_new[q]) -> lk_new[q] = NONE; \
       if :: inlock[q] && lk_cur[q] == NONE -> broken[q] = 1 :: else -> skip fi }

proctype unlock() {
end:
  do
  UNLOCK(CB)
  UNLOCK(RB)
  UNLOCK(FG)
  UNLOCK(PA)
#ifdef FULL
  UNLOCK(PB)
  UNLOCK(RP)
#endif
  od
}

/* ---------------- time: suspension (cairn) and crash (restic) ---------------- */
#ifdef BUG_NO_FREEZE
#define FROZEN_OK(q) true          /* BUG: frozen between the pre-commit check and the write */
#else
#define FROZEN_OK(q) (!win[q])
#endif

#ifndef NSUSP
#define NSUSP 2        /* at most this many suspensions/crashes in a run */
#endif
byte nsusp = NSUSP;

#define SUSPEND(q) \
  :: atomic { nsusp > 0 && FROZEN_OK(q) && (lk_cur[q] == FRESH || lk_new[q] == FRESH) -> nsusp--; \
       if :: lk_cur[q] == FRESH -> lk_cur[q] = OLD :: else -> skip fi; \
       if :: lk_new[q] == FRESH -> lk_new[q] = OLD :: else -> skip fi }

#define CRASH(q) \
  :: atomic { nsusp > 0 && !crashed[q] && inlock[q] -> nsusp--; crashed[q] = 1; \
       if :: lk_cur[q] != NONE -> lk_cur[q] = OLD :: else -> skip fi; \
       if :: lk_new[q] != NONE -> lk_new[q] = OLD :: else -> skip fi }

proctype clock() {
end:
  do
  SUSPEND(CB)
#ifdef SUSPEND_FORGET
  SUSPEND(FG)
#endif
  SUSPEND(PA)
#ifdef RESTIC_SUSPEND
  SUSPEND(RB)
#else
  CRASH(RB)
#endif
#ifdef FULL
  SUSPEND(PB)
  CRASH(RP)
#endif
  od
}

/* ---------------- invariants, checked in every reachable state ---------------- */
hidden byte mi, mj, mv, mb;

proctype monitor() {
end:
  do
  :: d_step {
       mv = 0; mi = 0;
       do
       :: mi < NIX -> if :: ix_exists & BIT(mi) -> mv = mv | ix_packs[mi] :: else -> skip fi; mi++
       :: else -> break
       od;
       /* I2: indexed packs exist */
       assert((mv & ~pk_exists) == 0);
       mb = 0; mi = 0;
       do
       :: mi < NPK -> if :: (mv & pk_exists) & BIT(mi) -> mb = mb | pk_blobs[mi] :: else -> skip fi; mi++
       :: else -> break
       od;
       /* I1: snapshot blobs are in existing, indexed packs */
       mi = 0;
       do
       :: mi < NS -> if :: sn_exists & BIT(mi) -> assert((sn_blobs[mi] & ~mb) == 0) :: else -> skip fi; mi++
       :: else -> break
       od;
       /* I3: an unbroken lock holder's view and uploads exist */
       mi = 0;
       do
       :: mi < NP ->
          if
          :: held[mi] && !broken[mi] && viewing[mi] -> assert(((view[mi] | upl[mi]) & ~pk_exists) == 0)
          :: held[mi] && !broken[mi] && !viewing[mi] -> assert((upl[mi] & ~pk_exists) == 0)
          :: else -> skip
          fi;
          mi++
       :: else -> break
       od;
       /* I4: exclusion among unbroken holders */
       mi = 0;
       do
       :: mi < NP ->
          mj = mi + 1;
          do
          :: mj < NP ->
             if
             :: held[mi] && !broken[mi] && held[mj] && !broken[mj] ->
                assert(!(lk_excl[mi] || lk_excl[mj] || (lk_prune[mi] && lk_prune[mj])))
             :: else -> skip
             fi;
             mj++
          :: else -> break
          od;
          mi++
       :: else -> break
       od;
       mi = 0; mj = 0; mv = 0; mb = 0
     }
  od
}

init {
  atomic {
    /* P0={b0} P1={b1,b2} P2={b3} P3={b3} (duplicate of P2, pending from an earlier mark) */
    pk_blobs[0] = BIT(0); pk_blobs[1] = BIT(1) | BIT(2); pk_blobs[2] = BIT(3); pk_blobs[3] = BIT(3);
    pk_exists = 15;
    /* S0={b0,b1} S1={b3}; b2 unused (P1 is a repack candidate) */
    sn_blobs[0] = BIT(0) | BIT(1); sn_blobs[1] = BIT(3); sn_exists = 3;
    /* index file 0 lists P0..P3; P3 pending, its used blob b3 kept (also in P2); the mark saw S0,S1 */
    ix_packs[0] = 15; ix_pend[0] = BIT(3); ix_keep[0 * NPK + 3] = BIT(3); ix_smark[0] = 3;
    ix_exists = 1;
    run monitor();
    run unlock();
    run clock();
#ifndef NO_CB
    run cairn_backup();
#endif
#ifndef NO_RB
    run restic_backup();
#endif
#ifndef NO_FG
    run forget();
#endif
    run prune_a();
#ifdef FULL
    run prune_b();
    run restic_prune()
#endif
  }
}

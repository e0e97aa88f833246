/*
 * cairn: lock protocol + two-phase prune, as a Promela model (spin 6).
 * Prose, invariants and the mapping to code: docs/concurrency.md.
 *
 * Actors
 *   cairn_backup   non-exclusive lock; loads the index after locking; dedups only against
 *                  packs that are listed and not pending; uploads the rest into a new pack;
 *                  pre-commit check; index write; pre-commit check; snapshot write.
 *   restic_backup  restic 0.14: same lock protocol, knows no marks (dedups against pending
 *                  packs too), makes no pre-commit checks.
 *   forget         cairn forget: non-exclusive lock, deletes one snapshot file.
 *   prune_a        cairn prune runs back to back: sweep, mark, sweep (PRUNE_PHASES).
 *   prune_b        (WITH_PB) a second cairn prune run (sweep, mark) concurrent with prune_a.
 *   restic_prune   (WITH_RP) restic 0.14 prune: exclusive, one phase, deletes unreferenced packs
 *                  at once, its index rewrite drops cairn's marks, no pre-commit checks.
 *   unlock         removes lock files that are stale.
 *   clock          time: makes a process's lock files OLD (the process was suspended or
 *                  died and did not refresh them for STALE_AFTER); restic processes that
 *                  lose their lock this way never run again (crash).
 *   monitor        checks the invariants in every reachable state.
 *
 * Time abstraction.  A lock file is FRESH while its owner runs and refreshes it.  It becomes
 * OLD only through the clock process.  unlock removes OLD lock files only (assumption
 * A-STALE: the staleness rule never calls a lock stale whose owner refreshed it within
 * STALE_AFTER).  A cairn process that passed a pre-commit check is not frozen long enough for
 * its lock to become stale before the write it guards completes (assumption A-FREEZE: the
 * clock cannot touch a process while win[p] is set).  The grace period --keep-delete is not
 * relied upon: the sweep chooses nondeterministically, per pending pack, whether its mark is
 * old enough, so every grace period including 0 is covered.  At most NSUSP suspensions or
 * crashes happen in one run.
 *
 * Crash.  A cairn process that is suspended and never scheduled again is a crashed process
 * (a safety check explores every finite prefix), so suspensions plus interleaving cover
 * crashes at every step of a cairn process, its lock left behind.  restic processes crash
 * explicitly (`unless crashed[...]`); -DRESTIC_SUSPEND instead lets restic 0.14 resume after
 * its lock was broken, which is its known H02 bug.
 *
 * Storage.  Every backend operation on one file is atomic (Save is atomic, Remove is
 * idempotent, List never hides an error), and the backend is read-after-write and
 * list-after-write consistent (assumption A-STORE).  Loading "the index" (list index/, load
 * each file) is modelled as one atomic read of the union of the index files: writers always
 * write replacements before deleting what they replace, and a reader that finds a listed
 * file gone reloads.
 *
 * Data.  5 blobs (bit masks in a byte), 8 pack slots, 11 index-file slots and 4 snapshot slots,
 * each slot written by one fixed step (so that equivalent states are not told apart by slot
 * numbers):
 *   packs   0..3 initial, 4 cairn_backup, 5 restic_backup, 6 prune_a's repack, 7 prune_b's
 *   index   0 initial, 1 cairn_backup, 2 restic_backup, 3..5 prune_a phases, 6..7 prune_b,
 *           8 restic_prune, 9 and 10 second files of prune_a's and prune_b's marks (MARK_SPLIT)
 *   snaps   0,1 initial, 2 cairn_backup, 3 restic_backup
 *
 * Comments such as  / * backup.after-pack-upload * /  name the failpoint of the code (docs/
 * failpoints.md) at that step boundary.
 *
 * Invariants (the monitor asserts I1..I4 in every reachable state; I5 at every commit):
 *   I1 every blob of every snapshot is in a pack that exists and is listed by an index file
 *   I2 every pack listed by an index file exists
 *   I3 a process holding a lock that was never broken finds every pack of the index it
 *      loaded, and every pack it uploaded, still in data/
 *   I4 two processes whose locks were never broken never hold conflicting locks
 *   I5 no cairn process commits (writes an index or snapshot, deletes anything) after its
 *      lock was broken
 *
 * Options (-D...): WITH_PB (add prune_b), WITH_RP (add restic_prune), FULL (both),
 * SWEEP_FULL (the sweep recomputes the used set from every snapshot instead of only those
 * the mark did not see), MARK_SPLIT (the mark writes its new index as two files, each
 * write a commit step with its own pre-commit check), SWEEP_DELETE_ONE_CHECK (one check
 * before the sweep's pack deletions instead of one per pack; I5 is then not asserted at
 * those deletions, I1..I4 still are), MARK_SERIES_DELETE / SWEEP_SERIES_DELETE (replaced
 * index files deleted one per step: the mark after one check, the sweep with a check before
 * each), MINIMAL_CHECKS and CODE_CHECKS (combinations, see below), NSUSP=n,
 * PRUNE_PHASES=n, NO_CB/NO_RB/NO_FG (leave an actor out), FORGET_ANY (forget may pick any
 * snapshot; default: the initial S1 or a backup's snapshot).
 * Deliberately broken variants (each must produce an assertion violation):
 *   BUG_SWEEP_NONEXCL         sweep under a non-exclusive lock
 *   BUG_MARK_DELETES_ORPHANS  phase 1 deletes packs that are in no index (H11)
 *   BUG_REFRESH_NOCHECK       refresh re-creates a lock without checking the old one (H02)
 *   BUG_UNSOUND_STALE         unlock removes live locks (clock skew H03, PID namespace H04)
 *   BUG_NO_FREEZE             frozen between the pre-commit check and the write (A-FREEZE)
 *   BUG_NO_PRECOMMIT          cairn commits without checking its lock (restic 0.14 style)
 *   BUG_INCR_BY_TIME          incremental sweep picks "new" snapshots by time, not ID (H09)
 *   BUG_ELSEWHERE_PENDING     "blob present elsewhere" counts other pending packs (H16)
 *   RESTIC_SUSPEND            restic 0.14 resumes after its lock was broken (H02, residual)
 *   BUG_SERIES_ONE_CHECK      with MARK_SPLIT: one pre-commit check for both index files
 *   BUG_SWEEP_NO_DELETE_CHECK no check at all before the sweep deletes packs
 *   BUG_SWEEP_SERIES_ONE_CHECK the sweep deletes replaced index files one per step after a
 *                             single check (they unlist the packs it then deletes)
 *   BUG_SWEEP_NO_WRITE_CHECK  no check right before the sweep writes its new index
 *   BUG_BACKUP_INDEX_UNCHECKED the backup writes its index file without a check
 * -DNO_I5 leaves out the I5 check, so that a broken variant runs on into the data loss.
 * Reachability probes (each must produce an assertion violation, which shows the good model
 * really reaches that situation, i.e. the verification is not vacuous):
 *   PROBE_RECOVER PROBE_ORPHAN_DELETE PROBE_REPACKED_DELETE PROBE_BACKUP_ABORT
 *   PROBE_NEED_DIFF (the incremental sweep's needed set differs from the full one)
 */

#ifdef FULL
#define WITH_PB
#define WITH_RP
#endif

/* MINIMAL_CHECKS: the fewest pre-commit checks that are still safe, for code that writes
 * and deletes in series: the mark's index is two files, each write checked; the mark deletes
 * the replaced files after one check; the sweep checks before each index file deletion;
 * one check precedes the sweep's pack deletions.
 * CODE_CHECKS: the check placement of internal/prune at the time of writing (one check before
 * the mark's index writes, none right before the sweep's index write, one before the sweep's
 * index deletions, none before a backup's index writes): fails, see docs/concurrency.md F11. */
#ifdef MINIMAL_CHECKS
#define MARK_SPLIT
#define MARK_SERIES_DELETE
#define SWEEP_SERIES_DELETE
#define SWEEP_DELETE_ONE_CHECK
#endif
#ifdef CODE_CHECKS
#define MARK_SPLIT
#define BUG_SERIES_ONE_CHECK
#define MARK_SERIES_DELETE
#define BUG_SWEEP_SERIES_ONE_CHECK
#define SWEEP_DELETE_ONE_CHECK
#define BUG_SWEEP_NO_WRITE_CHECK
#define BUG_BACKUP_INDEX_UNCHECKED
#endif
#ifdef BUG_SWEEP_NO_DELETE_CHECK
#undef SWEEP_DELETE_ONE_CHECK
#endif

#define NPK  8     /* pack slots */
#define NIX  11    /* index file slots */
#define NS   4     /* snapshot slots */

/* process ids (indices into the lock arrays) */
#define CB 0       /* cairn backup */
#define RB 1       /* restic 0.14 backup */
#define FG 2       /* cairn forget */
#define PA 3       /* cairn prune run(s) A */
#define PB 4       /* cairn prune run B (WITH_PB) */
#define RP 5       /* restic prune (WITH_RP) */
#define NP 6

#ifndef PRUNE_PHASES
#define PRUNE_PHASES 3
#endif
#ifndef NSUSP
#define NSUSP 2
#endif

/* lock file states */
#define NONE  0
#define FRESH 1
#define OLD   2

#define BIT(x) (1 << (x))

/* blobs the backups store */
#define CB_CONTENT 28   /* b2 b3 b4 */
#define RB_CONTENT 12   /* b2 b3 */

/* ---------------- repository ---------------- */
byte pk_blobs[NPK];        /* blobs in pack i */
byte pk_exists;            /* data/ */

short ix_exists;           /* index/ (bit mask over NIX slots) */
byte ix_packs[NIX];        /* packs listed by index file i (restic's "packs") */
byte ix_pend[NIX];         /* packs recorded as pending deletion (cairn_pending) */
byte ix_smark[NIX];        /* snapshot IDs the mark that wrote the pending entries had seen */
byte ix_keep[88];          /* [file*NPK+pack]: blobs of the pending pack used at mark time */

byte sn_exists;            /* snapshots/ */
byte sn_blobs[NS];         /* blobs snapshot i references (its trees and data) */

#ifdef BUG_INCR_BY_TIME
byte ix_mepoch[NIX];       /* time of the mark that wrote index file i */
byte sn_epoch[NS];         /* time field of snapshot i = start of its backup */
byte mark_epoch;
#endif

/* ---------------- locks ---------------- */
byte lk_cur[NP];           /* the process's current lock file */
byte lk_new[NP];           /* its replacement while a refresh is under way */
bool lk_excl[NP];          /* lock says exclusive */
bool lk_prune[NP];         /* lock says cairn_op=prune-*: cairn prunes exclude each other */
bool inlock[NP];           /* has written its lock and not released it */
bool held[NP];             /* believes it holds its lock */
bool broken[NP];           /* someone else removed all its lock files while inlock */
bool win[NP];              /* between a passed pre-commit check and the end of that write */
bool crashed[NP];          /* restic process crashed */
byte nsusp = NSUSP;

/* ---------------- what each process relies on (I3) ---------------- */
bool viewing[NP];
byte view[NP];             /* packs of the index it loaded */
byte upl[NP];              /* packs it uploaded */

/* ---------------- helpers ---------------- */

/* I5: a cairn process commits only while its lock was never broken.  -DNO_I5 drops this
 * check so that a broken variant runs on into the data loss that I1..I3 then detect. */
#ifdef NO_I5
#define COMMIT_OK(p) skip
#else
#define COMMIT_OK(p) assert(!broken[p])
#endif

/* c := another process has a lock file that conflicts with p's (stale ones too) */
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

/* Acquire: write own lock; 200 ms later recheck: no conflicting lock, own lock still there.
 * restic also checks once before writing; that only avoids needless writes, and leaving it
 * out only adds behaviours. */
inline acquire(p, ex, pr, ok) {
  atomic { lk_excl[p] = ex; lk_prune[p] = pr; lk_cur[p] = FRESH; inlock[p] = 1 };
                                                              /* lock.acquire.after-write (proposed) */
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

/* Refresh by replacement: write the new lock file; then, only if the old one is still
 * there, delete it and adopt the new one; otherwise the lock is lost: remove the new one. */
inline refresh(p) {
  lk_new[p] = FRESH;                                          /* lock.refresh.after-new (proposed) */
#ifdef BUG_REFRESH_NOCHECK
  atomic { lk_cur[p] = FRESH; lk_new[p] = NONE }
#else
  atomic {
    if
    :: lk_cur[p] != NONE && lk_new[p] != NONE -> lk_cur[p] = lk_new[p]; lk_new[p] = NONE
    :: else -> lk_cur[p] = NONE; lk_new[p] = NONE; held[p] = 0; inlock[p] = 0
    fi
  }
#endif
}

/* Pre-commit check: the current lock file exists and was refreshed recently.  If it is old
 * (we were suspended), refresh once and check again.  ok=0: abort without committing. */
inline precommit(p, ok) {
#ifdef BUG_NO_PRECOMMIT
  atomic { ok = 1; win[p] = 1 }
#else
  if
  :: atomic { held[p] && lk_cur[p] == FRESH -> win[p] = 1; ok = 1 }
  :: held[p] && lk_cur[p] == OLD ->
     refresh(p);
     atomic {
       if
       :: held[p] && lk_cur[p] == FRESH -> win[p] = 1; ok = 1
       :: else -> ok = 0
       fi
     }
  :: !held[p] || lk_cur[p] == NONE -> ok = 0
  fi
#endif
}

inline release(p) {
  atomic {
    lk_cur[p] = NONE; lk_new[p] = NONE; inlock[p] = 0; held[p] = 0; broken[p] = 0;
    win[p] = 0; viewing[p] = 0; view[p] = 0; upl[p] = 0; lk_excl[p] = 0; lk_prune[p] = 0
  }
}

/* v := packs listed by the index files, F := those files */
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
  :: i < NPK -> if :: (m) & BIT(i) -> out = out | pk_blobs[i] :: else -> skip fi; i++
  :: else -> break
  od;
  i = 0
}

inline used_of(sm, out) {
  out = 0; i = 0;
  do
  :: i < NS -> if :: (sm) & BIT(i) -> out = out | sn_blobs[i] :: else -> skip fi; i++
  :: else -> break
  od;
  i = 0
}

/* delete the index files in F (each removal is idempotent; contents cleared so that equal
 * repositories are equal states) */
inline delete_index_files(F) {
  i = 0;
  do
  :: i < NIX ->
     if
     :: (F) & BIT(i) ->
        ix_packs[i] = 0; ix_pend[i] = 0; ix_smark[i] = 0;
        ix_keep[i * NPK + 0] = 0; ix_keep[i * NPK + 1] = 0; ix_keep[i * NPK + 2] = 0;
        ix_keep[i * NPK + 3] = 0; ix_keep[i * NPK + 4] = 0; ix_keep[i * NPK + 5] = 0;
        ix_keep[i * NPK + 6] = 0; ix_keep[i * NPK + 7] = 0
     :: else -> skip
     fi;
     i++
  :: else -> break
  od;
  i = 0;
  ix_exists = ix_exists & ~(F)
}

inline delete_packs(m) {
  i = 0;
  do
  :: i < NPK -> if :: (m) & BIT(i) -> pk_blobs[i] = 0 :: else -> skip fi; i++
  :: else -> break
  od;
  i = 0;
  pk_exists = pk_exists & ~(m)
}

/* Deleting the replaced index files F.
 * Default: one commit step, guarded by a check.
 * Series (as the code does it): one file per step.  The mark's new index lists every pack of
 * the files it replaces, so one check before the series suffices (MARK_SERIES_DELETE).  The
 * sweep's new index drops the packs it will delete, so deleting an old file *unlists* them:
 * every file deletion is a commit step and needs its own check (SWEEP_SERIES_DELETE);
 * BUG_SWEEP_SERIES_ONE_CHECK checks once before the series. */
#define DELETE_ATOMIC(p, F, fail) \
  precommit(p, ok); \
  if :: !ok -> goto fail :: else -> skip fi; \
  atomic { COMMIT_OK(p); delete_index_files(F); win[p] = 0 }

#define DELETE_SERIES_ONE_CHECK(p, F, fail) \
  precommit(p, ok); \
  if :: !ok -> goto fail :: else -> skip fi; \
  win[p] = 0; \
  do \
  :: F == 0 -> break \
  :: else -> \
     atomic { \
       x = 0; \
       do :: (F) & BIT(x) -> break :: else -> x++ od; \
       delete_index_files(BIT(x)); F = F & ~BIT(x); x = 0 \
     } \
  od

#define DELETE_SERIES_EACH_CHECKED(p, F, fail) \
  do \
  :: F == 0 -> break \
  :: else -> \
     precommit(p, ok); \
     if :: !ok -> goto fail :: else -> skip fi; \
     atomic { \
       COMMIT_OK(p); \
       x = 0; \
       do :: (F) & BIT(x) -> break :: else -> x++ od; \
       delete_index_files(BIT(x)); F = F & ~BIT(x); x = 0; \
       win[p] = 0 \
     } \
  od

#ifdef MARK_SERIES_DELETE
#define MARK_DELETE_REPLACED(p, F, fail) DELETE_SERIES_ONE_CHECK(p, F, fail)
#else
#define MARK_DELETE_REPLACED(p, F, fail) DELETE_ATOMIC(p, F, fail)
#endif

#if defined(BUG_SWEEP_SERIES_ONE_CHECK)
#define SWEEP_DELETE_REPLACED(p, F, fail) DELETE_SERIES_ONE_CHECK(p, F, fail)
#elif defined(SWEEP_SERIES_DELETE)
#define SWEEP_DELETE_REPLACED(p, F, fail) DELETE_SERIES_EACH_CHECKED(p, F, fail)
#else
#define SWEEP_DELETE_REPLACED(p, F, fail) DELETE_ATOMIC(p, F, fail)
#endif

/* ---------------- backups ---------------- */

proctype cairn_backup() {
  byte i, c, v, avail, need;
  short F;
  bool ok;
  acquire(CB, 0, 0, ok);
  if :: !ok -> goto done :: else -> skip fi;
#ifdef BUG_INCR_BY_TIME
  sn_epoch[2] = mark_epoch;                   /* snapshot time = start of the backup */
#endif
  /* load the index after locking; dedup only against listed packs that are not pending */
  d_step {
    load_index(v, F); view[CB] = v; viewing[CB] = 1;
    avail = 0; i = 0;
    do
    :: i < NIX -> if :: F & BIT(i) -> avail = avail | ix_pend[i] :: else -> skip fi; i++
    :: else -> break
    od;
    i = 0;
    v = v & ~avail;
    blobs_of(v, avail);
    need = CB_CONTENT & ~avail;
    v = 0; F = 0; avail = 0
  };
  if
  :: need != 0 ->
     atomic { pk_blobs[4] = need; pk_exists = pk_exists | BIT(4); upl[CB] = BIT(4); need = 0 };
                                                              /* backup.after-pack-upload */
#ifdef BUG_BACKUP_INDEX_UNCHECKED
     atomic { ix_packs[1] = BIT(4); ix_exists = ix_exists | BIT(1) }
#else
     precommit(CB, ok);
     if :: !ok -> goto abort :: else -> skip fi;
     atomic { COMMIT_OK(CB); ix_packs[1] = BIT(4); ix_exists = ix_exists | BIT(1); win[CB] = 0 }
#endif
                                                              /* backup.after-index-upload */
  :: else -> skip
  fi;
  precommit(CB, ok);                                          /* backup.before-snapshot */
#ifdef PROBE_BACKUP_ABORT
  assert(ok || !broken[CB]);  /* reachability probe: a backup whose lock was broken aborts */
#endif
  if :: !ok -> goto abort :: else -> skip fi;
  atomic { COMMIT_OK(CB); sn_blobs[2] = CB_CONTENT; sn_exists = sn_exists | BIT(2); win[CB] = 0 };
                                                              /* backup.after-snapshot */
abort:
  release(CB);
done:
  skip
}

proctype restic_backup() {
  byte i, c, v, avail, need;
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
      blobs_of(v, avail);                     /* pending packs included: restic knows no marks */
      need = RB_CONTENT & ~avail;
      v = 0; F = 0; avail = 0
    };
    if
    :: need != 0 ->
       atomic { pk_blobs[5] = need; pk_exists = pk_exists | BIT(5); upl[RB] = BIT(5); need = 0 };
       atomic { ix_packs[2] = BIT(5); ix_exists = ix_exists | BIT(2) }
    :: else -> skip
    fi;
    atomic { sn_blobs[3] = RB_CONTENT; sn_exists = sn_exists | BIT(3) };
    release(RB);
rdone:
    skip
  } unless { crashed[RB] }
}

/* ---------------- forget: deletes one snapshot file, non-exclusive lock ---------------- */
proctype forget() {
  byte i, c, s;
  bool ok;
  acquire(FG, 0, 0, ok);
  if :: !ok -> goto fdone :: else -> skip fi;
  if
#ifdef FORGET_ANY
  :: sn_exists & BIT(0) -> s = 0
#endif
  :: sn_exists & BIT(1) -> s = 1
  :: sn_exists & BIT(2) -> s = 2
  :: sn_exists & BIT(3) -> s = 3
  :: else -> goto frelease
  fi;
  precommit(FG, ok);                                          /* then forget.after-first-remove */
  if :: !ok -> goto frelease :: else -> skip fi;
  atomic { COMMIT_OK(FG); sn_exists = sn_exists & ~BIT(s); sn_blobs[s] = 0; win[FG] = 0; s = 0 };
frelease:
  release(FG);
fdone:
  skip
}

/* ---------------- cairn prune ---------------- */

/* Phase 2, sweep: under an exclusive lock, delete the pending packs whose mark is old enough
 * and whose needed blobs are all in packs that stay; recover the others; write the new index,
 * delete the old index files, then delete the packs. */
inline sweep(p, nf) {
#ifdef BUG_SWEEP_NONEXCL
  acquire(p, 0, 1, ok);
#else
  acquire(p, 1, 1, ok);                                       /* cairn_op=prune-sweep, exclusive */
#endif
  if :: !ok -> goto sw_done :: else -> skip fi;
  atomic {
    /* a fresh view: snapshots, index, data/ */
    d_step {
      Snow = sn_exists; data = pk_exists;
      load_index(V, F);
      pany = 0; f = 0;
      do
      :: f < NIX -> if :: F & BIT(f) -> pany = pany | ix_pend[f] :: else -> skip fi; f++
      :: else -> break
      od;
      /* a listed pack is pending only if every index file listing it marks it pending */
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
      PO = pany & ~V;                         /* pending orphans: in no index */
      f = 0; x = 0; ok2 = 0; pany = 0
    };
    /* which marks are older than --keep-delete: any subset */
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
  if :: AG == 0 -> goto sw_release :: else -> skip fi;
  d_step {
    /* sref: snapshots every mark with entries in this index had seen */
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
    used_of(Snow & ~sref, U);                 /* only the snapshots the marks did not see */
#endif
    cover_ok = ((U & ~VB) == 0);              /* a used blob in no present, listed pack: abort */
    VB = 0; U = 0
  };
  if :: !cover_ok -> goto sw_release :: else -> skip fi;
  d_step {
    K = V & data & ~PI;                       /* packs that stay: listed, present, not pending */
    blobs_of(K, KB);
    DEL = 0; REC = 0; x = 0;
    do
    :: x < NPK ->
       if
       :: (PI & AG) & BIT(x) ->
          if
          :: !(data & BIT(x)) -> DEL = DEL | BIT(x)       /* listed but missing: drop the entry */
          :: else ->
#ifdef SWEEP_FULL
             used_of(Snow, U);
             need = pk_blobs[x] & U;
#else
             /* blobs the marks recorded as used + blobs used by snapshots they did not see */
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
#ifdef PROBE_NEED_DIFF
             used_of(Snow, U);
             assert(need == (pk_blobs[x] & U));   /* probe: incremental need != full need */
#endif
#endif
#ifdef BUG_ELSEWHERE_PENDING
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
    DELO = PO & AG & data;                    /* orphans still in no index, grace over */
    K = 0; KB = 0
  };
#ifdef PROBE_RECOVER
  assert(REC == 0);           /* reachability probe: the sweep recovers a pending pack */
#endif
#ifdef PROBE_ORPHAN_DELETE
  assert(DELO == 0);          /* reachability probe: the sweep deletes a pending orphan */
#endif
  if :: (DEL | DELO | REC) == 0 -> goto sw_release :: else -> skip fi;
#ifdef BUG_SWEEP_NO_WRITE_CHECK
  atomic {
#else
  precommit(p, ok);
  if :: !ok -> goto sw_release :: else -> skip fi;
  atomic {
    COMMIT_OK(p);
#endif
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
             :: (F & BIT(f)) && (ix_pend[f] & BIT(x)) -> ix_keep[(nf) * NPK + x] = ix_keep[(nf) * NPK + x] | ix_keep[f * NPK + x]
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
  };                                                          /* prune.after-new-index */
  SWEEP_DELETE_REPLACED(p, F, sw_release);                    /* prune.index-delete (each file) */
  DEL = DEL | DELO;
#if defined(SWEEP_DELETE_ONE_CHECK)
  /* one check after the old index files are gone, none per pack: every pack deleted from
   * here on is listed by no index file, so a process that locks after ours was broken
   * cannot rely on it (the clock may suspend us right after this check) */
  precommit(p, ok);
  if :: !ok -> goto sw_release :: else -> skip fi;
  win[p] = 0;
#endif
  do
  :: DEL == 0 -> break
  :: else ->
#if !defined(SWEEP_DELETE_ONE_CHECK) && !defined(BUG_SWEEP_NO_DELETE_CHECK)
     precommit(p, ok);                                        /* prune.before-pack-delete */
     if :: !ok -> break :: else -> skip fi;
#endif
     atomic {
#if !defined(SWEEP_DELETE_ONE_CHECK) && !defined(BUG_SWEEP_NO_DELETE_CHECK)
       COMMIT_OK(p);
#endif
       x = 0;
       do
       :: DEL & BIT(x) -> break
       :: else -> x++
       od;
#ifdef PROBE_REPACKED_DELETE
       assert(x != 1);         /* reachability probe: P1 deleted after its used blob was repacked */
#endif
       delete_packs(BIT(x)); DEL = DEL & ~BIT(x); x = 0;
       win[p] = 0
     }                                                        /* prune.pack-delete (before the next) */
  od;
sw_release:
  release(p);
  d_step { Snow = 0; data = 0; V = 0; F = 0; PI = 0; PO = 0; AG = 0; sref = 0;
           cover_ok = 0; DEL = 0; DELO = 0; REC = 0; ok = 0 };
sw_done:
  skip
}

/* Phase 1, mark: under a non-exclusive prune lock, list snapshots, then load the index;
 * repack partly used packs; write an index that still lists every pack, the unused and
 * repacked ones (and orphans) recorded as pending; delete the index files it replaced.
 * Nothing is deleted from data/. */
inline mark(p, nf, rp, nf2) {
  acquire(p, 0, 1, ok);                                       /* cairn_op=prune-mark */
  if :: !ok -> goto mk_done :: else -> skip fi;
  d_step {
    Snow = sn_exists; used_of(Snow, U)        /* snapshots first ... */
#ifdef BUG_INCR_BY_TIME
    ; mark_epoch++
#endif
  };
  d_step { load_index(V, F); view[p] = V; viewing[p] = 1;      /* ... then the index */
           blobs_of(V, VB); cover_ok = ((U & ~VB) == 0); VB = 0 };
  if :: !cover_ok -> goto mk_release :: else -> skip fi;      /* index incomplete: abort */
  d_step {
    data = pk_exists; PO = data & ~V;         /* orphans: in data/, in no index */
    K = 0; PI = 0; cov = 0; x = 0;
    do
    :: x < NPK ->
       if
       :: V & BIT(x) ->
          need = pk_blobs[x] & U;
          if
          :: need == pk_blobs[x] -> K = K | BIT(x)                      /* fully used */
          :: need == 0 -> PI = PI | BIT(x); mk[x] = 0                   /* unused */
          :: else -> PI = PI | BIT(x); mk[x] = need; cov = cov | need   /* partly used: repack */
          fi
       :: else -> skip
       fi;
       x++
    :: else -> break
    od;
    x = 0; need = 0;
    blobs_of(K, KB);
    cov = cov & ~KB;                          /* copy only blobs not already in a kept pack */
    K = 0; KB = 0; data = 0
  };
  if :: (PI | PO) == 0 -> goto mk_release :: else -> skip fi;
  if
  :: cov != 0 ->
     atomic { pk_blobs[rp] = cov; pk_exists = pk_exists | BIT(rp); upl[p] = BIT(rp); cov = 0; V = V | BIT(rp) }
                                                              /* prune.after-repack */
  :: else -> skip
  fi;
#ifdef MARK_SPLIT
  /* The new index is written as two files (the code splits at 50 000 blobs): P0..P2 with
   * their marks, then P3..P7 with theirs and the orphans.  Each file write is a commit step. */
  precommit(p, ok);
  if :: !ok -> goto mk_release :: else -> skip fi;
  atomic {
    COMMIT_OK(p);
    ix_packs[nf] = V & 7; ix_pend[nf] = (PI | PO) & 7; ix_smark[nf] = Snow;
    x = 0;
    do
    :: x < 3 -> ix_keep[(nf) * NPK + x] = mk[x]; mk[x] = 0; x++
    :: else -> break
    od;
    x = 0;
    ix_exists = ix_exists | BIT(nf);
    win[p] = 0
  };
#ifndef BUG_SERIES_ONE_CHECK
  precommit(p, ok);
  if :: !ok -> goto mk_release :: else -> skip fi;
#endif
  atomic {
    COMMIT_OK(p);
    ix_packs[nf2] = V & ~7; ix_pend[nf2] = (PI | PO) & ~7; ix_smark[nf2] = Snow;
    x = 3;
    do
    :: x < NPK -> ix_keep[(nf2) * NPK + x] = mk[x]; mk[x] = 0; x++
    :: else -> break
    od;
    x = 0;
    ix_exists = ix_exists | BIT(nf2);
    win[p] = 0
  };
#else
  precommit(p, ok);
  if :: !ok -> goto mk_release :: else -> skip fi;
  atomic {
    COMMIT_OK(p);
    ix_packs[nf] = V;
    ix_pend[nf] = PI | PO;
    ix_smark[nf] = Snow;
#ifdef BUG_INCR_BY_TIME
    ix_mepoch[nf] = mark_epoch;
#endif
    x = 0;
    do
    :: x < NPK -> ix_keep[(nf) * NPK + x] = mk[x]; mk[x] = 0; x++
    :: else -> break
    od;
    x = 0;
    ix_exists = ix_exists | BIT(nf);
    win[p] = 0
  };
#endif                                                        /* prune.after-new-index */
  MARK_DELETE_REPLACED(p, F, mk_release);                     /* prune.index-delete (each file) */
#ifdef BUG_MARK_DELETES_ORPHANS
  precommit(p, ok);
  if :: !ok -> goto mk_release :: else -> skip fi;
  atomic { delete_packs(PO); win[p] = 0 };
#endif
mk_release:
  release(p);
  d_step { Snow = 0; V = 0; F = 0; PI = 0; PO = 0; U = 0; cover_ok = 0; cov = 0; ok = 0;
           x = 0; do :: x < NPK -> mk[x] = 0; x++ :: else -> break od; x = 0 };
mk_done:
  skip
}

#define PRUNE_LOCALS \
  byte i, c, x, s2, f, Snow, data, V, pany, PI, PO, AG, sref, sx, U, VB, K, KB, DEL, DELO, REC, need, cov; \
  short F; \
  byte mk[NPK]; \
  bool ok, ok2, cover_ok

proctype prune_a() {
  PRUNE_LOCALS;
  byte phase;
  do
  :: phase < PRUNE_PHASES ->
     if
     :: phase % 2 == 0 -> sweep(PA, 3 + phase)
     :: else -> mark(PA, 3 + phase, 6, 9)
     fi;
     phase++
  :: else -> break
  od
}

#ifdef WITH_PB
proctype prune_b() {
  PRUNE_LOCALS;
  sweep(PB, 6);
  mark(PB, 7, 7, 10)
}
#endif

#ifdef WITH_RP
proctype restic_prune() {
  byte i, c, x, V, U, data, DEL;
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
    atomic { delete_packs(data & ~V); data = 0 };             /* unreferenced packs first */
    d_step {
      DEL = 0; x = 0;
      do
      :: x < NPK -> if :: (V & BIT(x)) && (pk_blobs[x] & U) == 0 -> DEL = DEL | BIT(x) :: else -> skip fi; x++
      :: else -> break
      od;
      x = 0; U = 0
    };
    if :: DEL == 0 -> goto rp_release :: else -> skip fi;
    atomic { ix_packs[8] = V & ~DEL; ix_exists = ix_exists | BIT(8) };   /* marks dropped */
    atomic { delete_index_files(F) };
    atomic { delete_packs(DEL) };
rp_release:
    release(RP);
rp_done:
    skip
  } unless { crashed[RP] }
}
#endif

/* ---------------- unlock ---------------- */
#ifdef BUG_UNSOUND_STALE
#define STALE(x) (x != NONE)
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
  UNLOCK(PB)
  UNLOCK(RP)
  od
}

/* ---------------- time: suspension (cairn) and crash (restic) ---------------- */
#ifdef BUG_NO_FREEZE
#define FROZEN_OK(q) true
#else
#define FROZEN_OK(q) (!win[q])
#endif

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
  SUSPEND(FG)
  SUSPEND(PA)
#ifdef RESTIC_SUSPEND
  SUSPEND(RB)
#else
  CRASH(RB)
#endif
  SUSPEND(PB)
  CRASH(RP)
  od
}

/* ---------------- invariants I1..I4 in every reachable state ---------------- */
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
       assert((mv & ~pk_exists) == 0);                                        /* I2 */
       mb = 0; mi = 0;
       do
       :: mi < NPK -> if :: (mv & pk_exists) & BIT(mi) -> mb = mb | pk_blobs[mi] :: else -> skip fi; mi++
       :: else -> break
       od;
       mi = 0;
       do
       :: mi < NS -> if :: sn_exists & BIT(mi) -> assert((sn_blobs[mi] & ~mb) == 0) :: else -> skip fi; mi++  /* I1 */
       :: else -> break
       od;
       mi = 0;
       do
       :: mi < NP ->
          if
          :: held[mi] && !broken[mi] -> assert(((view[mi] | upl[mi]) & ~pk_exists) == 0)  /* I3 */
          :: else -> skip
          fi;
          mi++
       :: else -> break
       od;
       mi = 0;
       do
       :: mi < NP ->
          mj = mi + 1;
          do
          :: mj < NP ->
             if
             :: held[mi] && !broken[mi] && held[mj] && !broken[mj] ->
                assert(!(lk_excl[mi] || lk_excl[mj] || (lk_prune[mi] && lk_prune[mj])))   /* I4 */
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
    /* P0={b0} P1={b1,b2} P2={b3} P3={b3}: P3 duplicates P2 and is pending from an earlier mark */
    pk_blobs[0] = BIT(0); pk_blobs[1] = BIT(1) | BIT(2); pk_blobs[2] = BIT(3); pk_blobs[3] = BIT(3);
    pk_exists = 15;
    /* S0={b0,b1} S1={b3}; b2 is unused, so P1 is a repack candidate */
    sn_blobs[0] = BIT(0) | BIT(1); sn_blobs[1] = BIT(3); sn_exists = 3;
    /* index file 0 lists P0..P3; P3 pending, its used blob b3 recorded; that mark saw S0,S1 */
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
#ifdef WITH_PB
    run prune_b();
#endif
#ifdef WITH_RP
    run restic_prune();
#endif
    skip
  }
}

/* sqlite.c - the embedded store backend: one SQLite database file.
 *
 * URL "sqlite:PATH" (or "sqlite://PATH"). The design (schema, indexes,
 * dry run, run lock) is described in docs/internals/store.md; the short of
 * it:
 *   - one connection, used by one thread (SQLITE_OPEN_NOMUTEX), WAL mode,
 *     synchronous=NORMAL, a large page cache, a busy timeout of 5 s;
 *   - every statement is prepared once, on first use, and kept in
 *     struct sqlite_store.stmts for the life of the store;
 *   - entries and changes are stored as BLOBs (entry_encode/change_encode);
 *     a CS entry is stored without its type, anchor and DN, which live in
 *     columns of their own;
 *   - a DN is indexed by the 64-bit hash of its normalised form (dn_key):
 *     lookups compare the normalised DNs of the (almost always single)
 *     candidate row, so a hash collision costs a comparison, never a wrong
 *     answer;
 *   - join keys live in table joinkey; each object also keeps the encoded
 *     list of its own keys (column jkeys), so replacing them needs no second
 *     index and an unchanged key list costs no write at all.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/codec.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/banned.h"

/* ---- schema --------------------------------------------------------------- */

/* Migrations: migrations[i] takes the schema from version i to i + 1. Each
 * is applied in one transaction together with the new schema_version. Only
 * ever append to this list. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE connector (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);"
    /* small columns first: a brief lookup reads only the start of a row */
    "CREATE TABLE cs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " connector INTEGER NOT NULL,"
    " mv_id INTEGER NOT NULL DEFAULT 0,"
    " hash INTEGER NOT NULL DEFAULT 0,"
    " flags INTEGER NOT NULL DEFAULT 0,"
    " import_state INTEGER NOT NULL DEFAULT 0,"
    " export_state INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " export_run INTEGER NOT NULL DEFAULT 0,"
    " dn_key INTEGER,"
    " anchor TEXT,"
    " type TEXT,"
    " dn TEXT,"
    " export_error TEXT,"
    " jkeys BLOB,"
    " entry BLOB,"
    " pending BLOB,"
    " unconfirmed BLOB);"
    "CREATE UNIQUE INDEX cs_anchor ON cs(connector, anchor) WHERE anchor IS NOT NULL;"
    "CREATE INDEX cs_dn ON cs(connector, dn_key) WHERE dn_key IS NOT NULL;"
    "CREATE INDEX cs_conn ON cs(connector);"
    "CREATE INDEX cs_mv ON cs(mv_id, connector) WHERE mv_id <> 0;"
    "CREATE INDEX cs_import ON cs(connector) WHERE import_state <> 0;"
    "CREATE INDEX cs_export ON cs(connector) WHERE export_state <> 0;"
    "CREATE TABLE mv ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " type TEXT NOT NULL,"
    " created_run INTEGER NOT NULL DEFAULT 0,"
    " updated_run INTEGER NOT NULL DEFAULT 0,"
    " jkeys BLOB,"
    " entry BLOB);"
    "CREATE TABLE joinkey (space INTEGER NOT NULL, attr TEXT NOT NULL, value TEXT NOT NULL,"
    " obj INTEGER NOT NULL, PRIMARY KEY (space, attr, value, obj)) WITHOUT ROWID;"
    "CREATE TABLE refwait (space INTEGER NOT NULL, key TEXT NOT NULL, referrer INTEGER NOT NULL,"
    " PRIMARY KEY (space, key, referrer)) WITHOUT ROWID;"
    "CREATE INDEX refwait_referrer ON refwait(space, referrer);"
    "CREATE TABLE watermark (connector INTEGER PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE run ("
    " id INTEGER PRIMARY KEY,"
    " step TEXT NOT NULL,"
    " connector TEXT,"
    " parent INTEGER NOT NULL DEFAULT 0,"
    " start_us INTEGER NOT NULL,"
    " end_us INTEGER NOT NULL DEFAULT 0,"
    " status TEXT NOT NULL,"
    " dry_run INTEGER NOT NULL DEFAULT 0,"
    " message TEXT,"
    " counters TEXT);"
    "CREATE TABLE run_error ("
    " id INTEGER PRIMARY KEY,"
    " run INTEGER NOT NULL,"
    " connector TEXT,"
    " anchor TEXT,"
    " dn TEXT,"
    " attr TEXT,"
    " code TEXT NOT NULL,"
    " message TEXT,"
    " cs_id INTEGER NOT NULL DEFAULT 0,"
    " mv_id INTEGER NOT NULL DEFAULT 0,"
    " time_us INTEGER NOT NULL);"
    "CREATE INDEX run_error_run ON run_error(run);"
    "CREATE TABLE run_lock ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " holder TEXT NOT NULL,"
    " pid INTEGER NOT NULL,"
    " host TEXT NOT NULL,"
    " start_ticks INTEGER NOT NULL,"
    " since_us INTEGER NOT NULL);",
    /* 1 -> 2: reference mapping (MV object -> the anchor or DN of its CS
     * object in a target, for every member of a group) reads the index
     * alone, not a table row per member */
    "DROP INDEX cs_mv;"
    "CREATE INDEX cs_mv ON cs(mv_id, connector, anchor, dn) WHERE mv_id <> 0;",
    /* 2 -> 3: resolving a reference (a group member's anchor -> its CS
     * object's link and state) reads this index alone, not a table row per
     * member */
    "CREATE INDEX cs_brief ON cs(connector, anchor, mv_id, flags, import_state, hash) "
    "WHERE anchor IS NOT NULL;",
    /* 3 -> 4: cs_brief finds an anchor; cs_put checks that an anchor is
     * free (one index less to write for every object: 79 bytes each) */
    "DROP INDEX cs_anchor;",
    /* 4 -> 5: the reference values an import added and removed since the
     * object's last sync (cs_object.ref_delta) */
    "ALTER TABLE cs ADD COLUMN refdelta BLOB;",
    /* 5 -> 6: the DNs a connector-space object had before a rename that
     * an import saw: a group whose member value the directory rewrote
     * without a change an import reports (AD linked values, OpenLDAP
     * refint) still resolves */
    "CREATE TABLE dnalias (connector INTEGER NOT NULL, dn_key INTEGER NOT NULL, cs INTEGER NOT "
    "NULL,"
    " dn TEXT NOT NULL, PRIMARY KEY (connector, dn_key, cs)) WITHOUT ROWID;"
    "CREATE INDEX dnalias_cs ON dnalias(cs);",
    /* 6 -> 7: join keys ordered by their value first. Most rows of one
     * space share their attribute name, so a key (space, attr, value, obj)
     * was compared column by column down to the value at every step of
     * every insert and look-up; with the value first SQLite's string
     * comparison decides at once (a full sync: -7 % of its instructions).
     * "Is attr a join key" (ST_MV_KEYED) scans until it finds one. */
    "CREATE TABLE joinkey7 (space INTEGER NOT NULL, attr TEXT NOT NULL, value TEXT NOT NULL,"
    " obj INTEGER NOT NULL, PRIMARY KEY (value, space, attr, obj)) WITHOUT ROWID;"
    "INSERT INTO joinkey7(space, attr, value, obj)"
    " SELECT space, attr, value, obj FROM joinkey;"
    "DROP TABLE joinkey;"
    "ALTER TABLE joinkey7 RENAME TO joinkey;",
};
#define SCHEMA_VERSION ((long)ARRAY_SIZE(migrations))

/* "idsy": marks the file as an idsync store (PRAGMA application_id). */
#define APPLICATION_ID 0x69647379

/* Stored in cs.flags next to the CS_* flags: the row has an unconfirmed
 * change. Lets store_cs_brief answer has_unconfirmed without touching the
 * BLOB. Never visible in cs_object.flags. */
#define CS_STORED_UNCONFIRMED 0x40000000u
/* Stored in cs.flags too: the pending export renames the object (has a new
 * DN). Lets store_cs_ident tell an export waiting for a rename without
 * reading the pending change (a member's pending add may carry a photo). */
#define CS_STORED_RENAME 0x20000000u
#define CS_STORED_BITS   (CS_STORED_UNCONFIRMED | CS_STORED_RENAME)

/* cs.flags as stored for o: its CS_* flags and the stored-only bits. */
static int64_t stored_flags(const struct cs_object *o)
{
    return (int64_t)((o->flags & ~CS_STORED_BITS) |
                     (o->unconfirmed != NULL ? CS_STORED_UNCONFIRMED : 0u) |
                     (o->pending_export != NULL && o->pending_export->new_dn != NULL
                          ? CS_STORED_RENAME
                          : 0u));
}

/* ---- statements ----------------------------------------------------------- */

#define CS_COLS                                                                                    \
    "id, connector, mv_id, hash, flags, import_state, export_state, attempts, export_run, "        \
    "anchor, type, dn, export_error, entry, pending, unconfirmed, refdelta"
#define RUN_COLS "id, step, connector, parent, start_us, end_us, status, dry_run, message, counters"
#define ERR_COLS "run, connector, anchor, dn, attr, code, message, cs_id, mv_id, time_us"

/* X(name, sql) - prepared once, on first use */
#define STMT_LIST                                                                                  \
    X(ST_BEGIN, "BEGIN IMMEDIATE")                                                                 \
    X(ST_COMMIT, "COMMIT")                                                                         \
    X(ST_ROLLBACK, "ROLLBACK")                                                                     \
    X(ST_BEGIN_READ, "BEGIN DEFERRED")                                                             \
    X(ST_SAVEPOINT, "SAVEPOINT batch")                                                             \
    X(ST_RELEASE, "RELEASE batch")                                                                 \
    X(ST_ROLLBACK_TO, "ROLLBACK TO batch")                                                         \
    X(ST_CONN_GET, "SELECT id FROM connector WHERE name = ?1")                                     \
    X(ST_CONN_ADD, "INSERT INTO connector(name) VALUES (?1)")                                      \
    X(ST_CONN_ALL, "SELECT id FROM connector ORDER BY id")                                         \
    X(ST_CONN_NAME, "SELECT name FROM connector WHERE id = ?1")                                    \
    X(ST_CONN_NEXT, "SELECT id FROM connector WHERE id > ?1 ORDER BY id LIMIT 1")                  \
    X(ST_CONN_DEL, "DELETE FROM connector WHERE id = ?1")                                          \
    X(ST_CONN_RENAME, "UPDATE connector SET name = ?2 WHERE id = ?1")                              \
    X(ST_CONN_HAS_CS, "SELECT 1 FROM cs INDEXED BY cs_conn WHERE connector = ?1 LIMIT 1")          \
    X(ST_CS_BRIEF, "SELECT id, hash, mv_id, flags, import_state FROM cs INDEXED BY cs_brief "      \
                   "WHERE connector = ?1 AND anchor = ?2 AND anchor IS NOT NULL")                  \
    X(ST_CS_GET, "SELECT " CS_COLS " FROM cs WHERE id = ?1")                                       \
    X(ST_CS_BY_ANCHOR, "SELECT " CS_COLS " FROM cs WHERE connector = ?1 AND anchor = ?2")          \
    X(ST_CS_BY_DN, "SELECT " CS_COLS " FROM cs WHERE connector = ?1 AND dn_key = ?2 ORDER BY id")  \
    X(ST_CS_BRIEF_BY_DN, "SELECT id, hash, mv_id, flags, import_state, dn FROM cs "                \
                         "WHERE connector = ?1 AND dn_key = ?2 ORDER BY id")                       \
    X(ST_CS_BRIEF_BY_DN_OTHER, "SELECT id, hash, mv_id, flags, import_state, dn FROM cs "          \
                               "WHERE connector = ?1 AND dn_key = ?2 AND id <> ?3 ORDER BY id")    \
    /* the lowest id of the (normally one) CS object: min() over the index,                        \
     * where "ORDER BY id LIMIT 1" sorted in a temporary b-tree per call */                        \
    X(ST_CS_BY_MV, "SELECT " CS_COLS " FROM cs WHERE id = (SELECT min(id) FROM cs INDEXED BY "     \
                   "cs_mv WHERE mv_id = ?2 AND mv_id <> 0 AND connector = ?1)")                    \
    /* index only: anchor and dn of the row min() picks (one row, id NULL                          \
     * when there is none) */                                                                      \
    X(ST_CS_REF_BY_MV, "SELECT min(id), anchor, dn, 0 FROM cs INDEXED BY cs_mv WHERE mv_id = ?2 "  \
                       "AND mv_id <> 0 AND connector = ?1")                                        \
    X(ST_CS_INSERT,                                                                                \
      "INSERT INTO cs(connector, mv_id, hash, flags, import_state, export_state, attempts, "       \
      "export_run, dn_key, anchor, type, dn, export_error, jkeys, entry, pending, unconfirmed, "   \
      "refdelta) "                                                                                 \
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?20)")  \
    X(ST_CS_OLD, "SELECT connector, anchor, dn_key, mv_id, import_state, export_state, jkeys "     \
                 "FROM cs WHERE id = ?1")                                                          \
    X(ST_CS_KEYS_OF, "SELECT connector, jkeys FROM cs WHERE id = ?1")                              \
    X(ST_CS_PENDING_OPS,                                                                           \
      "SELECT substr(pending, 1, 4), flags, mv_id FROM cs INDEXED BY cs_export "                   \
      "WHERE connector = ?1 AND export_state <> 0 AND pending IS NOT NULL")                        \
    X(ST_CS_SET_EXPORT_STATE, "UPDATE cs SET export_state = ?2, export_run = ?3 WHERE id = ?1")    \
    X(ST_CS_PUT_LINK, "UPDATE cs SET mv_id = ?2, flags = ?3, import_state = ?4, refdelta = ?5 "    \
                      "WHERE id = ?1")                                                             \
    X(ST_CS_IDENT,                                                                                 \
      "SELECT id, anchor, dn, import_state, export_state, flags FROM cs WHERE id = ?1")            \
    X(ST_CS_PUT_EXPORT, "UPDATE cs SET export_state = ?2, pending = ?3, attempts = ?4, "           \
                        "flags = (flags & ~?8) | ?7, "                                             \
                        "export_error = ?5, export_run = ?6 WHERE id = ?1")                        \
    X(ST_CS_DELETE, "DELETE FROM cs WHERE id = ?1")                                                \
    X(ST_ALIAS_ADD, "INSERT OR REPLACE INTO dnalias(connector, dn_key, cs, dn) "                   \
                    "VALUES (?1, ?2, ?3, ?4)")                                                     \
    X(ST_ALIAS_FIND, "SELECT cs, dn FROM dnalias WHERE connector = ?1 AND dn_key = ?2 "            \
                     "ORDER BY cs DESC")                                                           \
    X(ST_ALIAS_CLEAR, "DELETE FROM dnalias WHERE cs = ?1")                                         \
    X(ST_CS_LINKS,                                                                                 \
      "SELECT id FROM cs INDEXED BY cs_mv WHERE mv_id = ?1 AND mv_id <> 0 ORDER BY id")            \
    X(ST_KEY_FIND, "SELECT obj FROM joinkey WHERE space = ?1 AND attr = ?2 AND value = ?3")        \
    X(ST_KEY_ADD,                                                                                  \
      "INSERT OR IGNORE INTO joinkey(space, attr, value, obj) VALUES (?1, ?2, ?3, ?4)")            \
    X(ST_KEY_DEL,                                                                                  \
      "DELETE FROM joinkey WHERE space = ?1 AND attr = ?2 AND value = ?3 AND obj = ?4")            \
    X(ST_MV_GET, "SELECT id, type, created_run, updated_run, entry FROM mv WHERE id = ?1")         \
    X(ST_MV_INSERT, "INSERT INTO mv(type, created_run, updated_run, jkeys, entry) "                \
                    "VALUES (?1, ?2, ?3, ?4, ?5)")                                                 \
    X(ST_MV_UPDATE, "UPDATE mv SET type = ?1, created_run = ?2, updated_run = ?3, "                \
                    "jkeys = CASE WHEN ?7 THEN ?4 ELSE jkeys END, entry = ?5 WHERE id = ?6")       \
    X(ST_MV_KEYS_OF, "SELECT jkeys FROM mv WHERE id = ?1")                                         \
    X(ST_MV_ENTRY_OF, "SELECT entry FROM mv WHERE id = ?1")                                        \
    X(ST_MV_DELETE, "DELETE FROM mv WHERE id = ?1")                                                \
    X(ST_MV_FIND, "SELECT k.obj FROM joinkey k WHERE k.space = 0 AND k.attr = ?1 "                 \
                  "AND k.value = ?2 AND (?3 IS NULL OR EXISTS "                                    \
                  "(SELECT 1 FROM mv m WHERE m.id = k.obj AND m.type = ?3))")                      \
    X(ST_MV_IDS, "SELECT id FROM mv WHERE id > ?1 AND (?3 IS NULL OR type = ?3) "                  \
                 "ORDER BY id LIMIT ?2")                                                           \
    X(ST_MV_COUNT, "SELECT count(*) FROM mv")                                                      \
    X(ST_MV_KEYED, "SELECT 1 FROM joinkey WHERE space = 0 AND attr = ?1 LIMIT 1")                  \
    X(ST_MV_SEARCH_KEY, "SELECT obj FROM joinkey WHERE space = 0 AND attr = ?1 AND value = ?2 "    \
                        "AND obj > ?3 ORDER BY obj LIMIT ?4")                                      \
    X(ST_MV_SCAN, "SELECT id, entry FROM mv WHERE id > ?1 ORDER BY id")                            \
    X(ST_REF_ADD, "INSERT OR IGNORE INTO refwait(space, key, referrer) VALUES (?1, ?2, ?3)")       \
    X(ST_REF_WAITERS, "SELECT referrer FROM refwait WHERE space = ?1 AND key = ?2 "                \
                      "ORDER BY referrer")                                                         \
    X(ST_REF_CLEAR, "DELETE FROM refwait WHERE space = ?1 AND referrer = ?2")                      \
    X(ST_REF_PREFIX, "SELECT key, referrer FROM refwait WHERE space = ?1 AND key >= ?2 "           \
                     "AND key < ?3 ORDER BY key, referrer")                                        \
    X(ST_REF_UNWAIT, "DELETE FROM refwait WHERE space = ?1 AND key = ?2 AND referrer = ?3")        \
    X(ST_WM_GET, "SELECT value FROM watermark WHERE connector = ?1")                               \
    X(ST_WM_SET, "INSERT INTO watermark(connector, value) VALUES (?1, ?2) "                        \
                 "ON CONFLICT(connector) DO UPDATE SET value = excluded.value")                    \
    X(ST_WM_DEL, "DELETE FROM watermark WHERE connector = ?1")                                     \
    X(ST_META_GET, "SELECT value FROM meta WHERE key = ?1")                                        \
    X(ST_META_SET, "INSERT INTO meta(key, value) VALUES (?1, ?2) "                                 \
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value")                        \
    X(ST_META_DEL, "DELETE FROM meta WHERE key = ?1")                                              \
    X(ST_RUN_INSERT, "INSERT INTO run(" RUN_COLS ") "                                              \
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")                           \
    X(ST_RUN_FINISH, "UPDATE run SET end_us = ?2, status = ?3, message = ?4, counters = ?5 "       \
                     "WHERE id = ?1")                                                              \
    X(ST_RUN_MAX, "SELECT coalesce(max(id), 0) FROM run")                                          \
    X(ST_RUN_GET, "SELECT " RUN_COLS " FROM run WHERE id = ?1")                                    \
    X(ST_RUN_LIST, "SELECT " RUN_COLS " FROM run WHERE id < ?1 ORDER BY id DESC LIMIT ?2")         \
    X(ST_ERR_INSERT, "INSERT INTO run_error(" ERR_COLS ") "                                        \
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")                           \
    X(ST_ERR_LIST, "SELECT " ERR_COLS " FROM run_error WHERE run = ?1 ORDER BY id "                \
                   "LIMIT ?2 OFFSET ?3")                                                           \
    X(ST_ERR_LAST_RUN, "SELECT coalesce(max(run), 0) FROM run_error")                              \
    X(ST_ERR_COUNT, "SELECT count(*) FROM run_error WHERE run = ?1")                               \
    X(ST_RUN_OLD, "SELECT id FROM run WHERE start_us < ?1 AND id < (SELECT max(id) FROM run) "     \
                  "ORDER BY id LIMIT 256")                                                         \
    X(ST_RUN_DEL, "DELETE FROM run WHERE id = ?1")                                                 \
    X(ST_ERR_DEL_RUN, "DELETE FROM run_error WHERE run = ?1")                                      \
    X(ST_LOCK_GET, "SELECT holder, pid, host, start_ticks, since_us FROM run_lock WHERE id = 1")   \
    X(ST_LOCK_SET,                                                                                 \
      "INSERT OR REPLACE INTO run_lock(id, holder, pid, host, start_ticks, since_us) "             \
      "VALUES (1, ?1, ?2, ?3, ?4, ?5)")                                                            \
    X(ST_LOCK_DEL, "DELETE FROM run_lock WHERE id = 1 AND pid = ?1 AND host = ?2")

enum stmt_id {
#define X(name, sql) name,
    STMT_LIST
#undef X
        ST_COUNT
};

static const char *const stmt_sql[] = {
#define X(name, sql) [name] = sql,
    STMT_LIST
#undef X
};

/* Selections of store_cs_ids / store_cs_count: the condition added to
 * "connector = ?1" (per connector) or used alone (every connector). The
 * per-connector forms name the index that keeps them ordered by id. */
struct sel_sql {
    const char *from_one; /* FROM clause for one connector */
    const char *from_all; /* FROM clause for every connector */
    const char *cond;     /* extra condition, "" for none */
};
static const struct sel_sql sel_sqls[] = {
    [STORE_SEL_ALL] = {"cs INDEXED BY cs_conn", "cs", ""},
    [STORE_SEL_PENDING_IMPORT] = {"cs INDEXED BY cs_import", "cs", " AND import_state <> 0"},
    [STORE_SEL_PENDING_EXPORT] = {"cs INDEXED BY cs_export", "cs", " AND export_state <> 0"},
    [STORE_SEL_INFLIGHT] = {"cs INDEXED BY cs_export", "cs",
                            " AND export_state <> 0 AND export_state = 2"},
    [STORE_SEL_DISCONNECTORS] = {"cs INDEXED BY cs_conn", "cs NOT INDEXED", " AND mv_id = 0"},
    [STORE_SEL_JOINED] = {"cs INDEXED BY cs_conn", "cs NOT INDEXED", " AND mv_id <> 0"},
};
#define SEL_COUNT ARRAY_SIZE(sel_sqls)

/* Replacing a CS object names in its UPDATE only the indexed columns whose
 * value changed: SQLite rewrites the entries of every index whose columns
 * appear in the SET clause, changed or not, and an import or sync that
 * rewrote the (randomly spread) anchor and DN index entries of every object
 * would dirty most index pages of the store in each batch. */
#define CS_UPD_ANCHOR    0x01u
#define CS_UPD_DN_KEY    0x02u
#define CS_UPD_MV        0x04u
#define CS_UPD_IMPORT    0x08u
#define CS_UPD_EXPORT    0x10u
#define CS_UPD_CONNECTOR 0x20u
#define CS_UPD_ALL       0x3fu

/* The stored values of a CS object's indexed columns, before an update. */
struct cs_old {
    int64_t connector;
    bool has_dn_key;
    int64_t dn_key;
    int64_t mv_id;
    int64_t import_state;
    int64_t export_state;
    struct strbuf anchor; /* with has_anchor */
    bool has_anchor;
};

/* ---- the backend struct --------------------------------------------------- */

enum run_op_kind { RUN_OP_START, RUN_OP_FINISH, RUN_OP_ERROR };

/* A run-history write held back while a dry run is open. */
struct run_op {
    enum run_op_kind kind;
    struct run_record rec; /* START, FINISH */
    struct run_error err;  /* ERROR */
};

struct sqlite_store {
    struct store base; /* first member */
    sqlite3 *db;
    char *path;                          /* the database file */
    sqlite3_stmt *stmts[ST_COUNT];       /* prepared on first use */
    sqlite3_stmt *sel_ids[SEL_COUNT][2]; /* [sel][every connector?] */
    sqlite3_stmt *sel_count[SEL_COUNT][2];
    sqlite3_stmt *cs_update[CS_UPD_ALL + 1]; /* by mask of changed indexed columns */
    bool in_tx;   /* store_begin is open (a savepoint inside a dry run) */
    bool dry_run; /* store_dry_run_begin is open */
    bool in_read; /* store_read_begin is open (a deferred transaction) */
    /* scratch buffers, reused by every call */
    struct strbuf enc;      /* entry BLOB */
    struct strbuf pend;     /* pending_export BLOB */
    struct strbuf unconf;   /* unconfirmed BLOB */
    struct strbuf rdelta;   /* refdelta BLOB */
    struct strbuf keys_new; /* encoded join keys */
    struct strbuf keys_old;
    struct strbuf norm; /* normalised value */
    struct strbuf norm2;
    struct cs_old old; /* cs_put: the row being replaced */
    /* run history held back during a dry run, written after its rollback */
    struct run_op *ops;
    size_t nops;
    size_t alloc_ops;
    int64_t next_run_id;  /* next id handed out during a dry run */
    bool lock_held;       /* this handle holds the run lock */
    bool release_pending; /* release the lock once the transaction ends */
    bool memory;          /* ":memory:" */
    char *state_dir;      /* path + ".state", NULL in memory */
    int wal_frames;       /* frames in the WAL after this handle's last commit */
};

/* Pages of 16 KiB in the WAL at which a commit checkpoints (256 MiB), and
 * up to which a closing handle leaves the WAL for the next one (64 MiB):
 * a delta step then costs one fsync of the WAL at its last commit instead
 * of copying its pages into the database and syncing that too. Not more:
 * the first handle of the next process reads the whole WAL back (SQLite's
 * WAL recovery, about 1 ms a MiB here), and a larger one is checkpointed
 * and truncated at close. A delta cycle of 165 objects writes ~32 MiB of
 * WAL (16 KiB pages): one cycle in two pays the checkpoint. */
#define WAL_AUTOCHECKPOINT 16384
#define WAL_KEEP_AT_CLOSE  4096

static struct sqlite_store *sq(struct store *s)
{
    return (struct sqlite_store *)s;
}

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- errors and statement helpers ---------------------------------------- */

static enum ids_err db_fail(struct sqlite_store *s, int rc, const char *op, struct ids_error *err)
{
    return ids_error_set_detail(err, IDS_ESTORE, rc, "store %s: %s: %s", s->path, op,
                                sqlite3_errmsg(s->db));
}

static bool is_unique_violation(int rc)
{
    return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY;
}

static sqlite3_stmt *prepare(struct sqlite_store *s, const char *sql, struct ids_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        db_fail(s, rc, "prepare", err);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* The cached statement `id` (reset, ready to bind), or NULL with err set. */
static sqlite3_stmt *stmt(struct sqlite_store *s, enum stmt_id id, struct ids_error *err)
{
    if (s->stmts[id] == NULL) {
        s->stmts[id] = prepare(s, stmt_sql[id], err);
    }
    return s->stmts[id];
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL) {
        sqlite3_bind_null(st, i);
    } else {
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    }
}

static void bind_buf(sqlite3_stmt *st, int i, const struct strbuf *sb, bool null_if_empty)
{
    if (null_if_empty && sb->len == 0) {
        sqlite3_bind_null(st, i);
    } else {
        sqlite3_bind_blob64(st, i, sb->buf, sb->len, SQLITE_STATIC);
    }
}

/* Column text as a malloc'ed string, NULL for SQL NULL. */
static char *col_strdup(sqlite3_stmt *st, int i)
{
    const unsigned char *t;

    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
        return NULL;
    }
    t = sqlite3_column_text(st, i);
    return xmemdup(t, (size_t)sqlite3_column_bytes(st, i));
}

/* Run a statement that returns no rows (or whose rows are not wanted). */
static enum ids_err run_simple(struct sqlite_store *s, sqlite3_stmt *st, const char *op,
                               struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int rc;

    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        ret = db_fail(s, rc, op, err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err exec_id(struct sqlite_store *s, enum stmt_id id, const char *op,
                            struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, id, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    return run_simple(s, st, op, err);
}

/* Multi-statement operations outside any transaction get one of their own,
 * so that each store_*() call is atomic. */
static enum ids_err auto_begin(struct sqlite_store *s, bool *own, struct ids_error *err)
{
    enum ids_err ret;

    *own = false;
    if (s->in_read) {
        return ids_error_set(err, IDS_EINTERNAL, "a write inside a read snapshot");
    }
    if (!sqlite3_get_autocommit(s->db)) {
        return IDS_OK;
    }
    ret = exec_id(s, ST_BEGIN, "begin", err);
    if (ret == IDS_OK) {
        *own = true;
    }
    return ret;
}

static enum ids_err auto_end(struct sqlite_store *s, bool own, enum ids_err ret,
                             struct ids_error *err)
{
    if (!own) {
        return ret;
    }
    if (ret == IDS_OK) {
        ret = exec_id(s, ST_COMMIT, "commit", err);
        if (ret == IDS_OK) {
            return IDS_OK;
        }
    }
    if (!sqlite3_get_autocommit(s->db)) {
        /* rollback failure leaves nothing more to report than ret */
        exec_id(s, ST_ROLLBACK, "rollback", NULL);
    }
    return ret;
}

/* ---- small encodings ------------------------------------------------------ */

/* Join keys of one object as stored in its jkeys column: per key, varint
 * length + attribute (lower case), varint length + normalised value. */
static void encode_keys(const struct store_keys *keys, struct strbuf *out, struct strbuf *scratch)
{
    size_t i;

    strbuf_reset(out);
    for (i = 0; i < keys->nr; i++) {
        const struct store_key *k = &keys->k[i];

        if (k->attr == NULL || k->value == NULL) {
            continue;
        }
        strbuf_reset(scratch);
        strbuf_addstr(scratch, k->attr);
        strbuf_tolower(scratch);
        varint_put(out, scratch->len);
        strbuf_addbuf(out, scratch);
        strbuf_reset(scratch);
        value_normalize(scratch, k->value, strlen(k->value));
        varint_put(out, scratch->len);
        strbuf_addbuf(out, scratch);
    }
}

/* Next key of an encoded list: false at the end or on corrupt data (r->bad). */
static bool next_key(struct varint_reader *r, const char **attr, int *alen, const char **val,
                     int *vlen)
{
    uint64_t n;

    if (r->bad || r->p >= r->end) {
        return false;
    }
    n = varint_get(r);
    if (r->bad || n > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return false;
    }
    *attr = (const char *)r->p;
    *alen = (int)n;
    r->p += n;
    n = varint_get(r);
    if (r->bad || n > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return false;
    }
    *val = (const char *)r->p;
    *vlen = (int)n;
    r->p += n;
    return true;
}

/* One key of an encoded list, pointing into it. */
struct keyref {
    const char *attr;
    const char *val;
    int alen;
    int vlen;
};

static enum ids_err key_write(struct sqlite_store *s, sqlite3_stmt *st, int64_t space, int64_t obj,
                              const struct keyref *k, bool add, struct ids_error *err)
{
    sqlite3_bind_int64(st, 1, space);
    sqlite3_bind_text(st, 2, k->attr, k->alen, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, k->val, k->vlen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, obj);
    return run_simple(s, st, add ? "add join key" : "delete join key", err);
}

/* Add (add == true) or delete the keys of `blob` for object `obj`. */
static enum ids_err apply_keys(struct sqlite_store *s, int64_t space, int64_t obj,
                               const struct strbuf *blob, bool add, struct ids_error *err)
{
    struct varint_reader r = {(const unsigned char *)blob->buf,
                              (const unsigned char *)blob->buf + blob->len, false};
    sqlite3_stmt *st = stmt(s, add ? ST_KEY_ADD : ST_KEY_DEL, err);
    struct keyref k;
    enum ids_err ret = IDS_OK;

    if (st == NULL) {
        return IDS_ESTORE;
    }
    while (ret == IDS_OK && next_key(&r, &k.attr, &k.alen, &k.val, &k.vlen)) {
        ret = key_write(s, st, space, obj, &k, add, err);
    }
    if (ret == IDS_OK && r.bad) {
        ret = ids_error_set(err, IDS_ESTORE, "store %s: object %" PRId64 ": corrupt join key list",
                            s->path, obj);
    }
    return ret;
}

static int cmp_keyref(const void *pa, const void *pb)
{
    const struct keyref *a = pa;
    const struct keyref *b = pb;
    int c = memcmp(a->attr, b->attr, (size_t)(a->alen < b->alen ? a->alen : b->alen));

    if (c != 0 || a->alen != b->alen) {
        return c != 0 ? c : (a->alen < b->alen ? -1 : 1);
    }
    c = memcmp(a->val, b->val, (size_t)(a->vlen < b->vlen ? a->vlen : b->vlen));
    if (c != 0 || a->vlen == b->vlen) {
        return c;
    }
    return a->vlen < b->vlen ? -1 : 1;
}

/* The keys of an encoded list, sorted (*bad: corrupt). */
static struct keyref *keys_sorted(const struct strbuf *blob, size_t *n, bool *bad)
{
    struct varint_reader r = {(const unsigned char *)blob->buf,
                              (const unsigned char *)blob->buf + blob->len, false};
    struct keyref *v = NULL;
    struct keyref k;
    size_t alloc = 0;

    *n = 0;
    while (next_key(&r, &k.attr, &k.alen, &k.val, &k.vlen)) {
        ALLOC_GROW(v, *n + 1, alloc);
        v[(*n)++] = k;
    }
    *bad = r.bad;
    if (*n > 1) {
        qsort(v, *n, sizeof(*v), cmp_keyref);
    }
    return v;
}

/* Replace the keys `old` of an object by `new` (both encoded): only the
 * keys that went are deleted and the keys that came added (a group of
 * 50,000 members indexed by member, one member changed: two writes);
 * nothing is written when they are equal. */
static enum ids_err replace_keys(struct sqlite_store *s, int64_t old_space, int64_t space,
                                 int64_t obj, const struct strbuf *old, const struct strbuf *new,
                                 struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    struct keyref *a;
    struct keyref *b;
    size_t na;
    size_t nb;
    size_t i = 0;
    size_t j = 0;
    bool bad_a;
    bool bad_b;
    sqlite3_stmt *add;
    sqlite3_stmt *del;

    if (old_space == space && old->len == new->len &&
        (new->len == 0 || memcmp(old->buf, new->buf, new->len) == 0)) {
        return IDS_OK;
    }
    if (old_space != space) {
        ret = apply_keys(s, old_space, obj, old, false, err);
        return ret == IDS_OK ? apply_keys(s, space, obj, new, true, err) : ret;
    }
    add = stmt(s, ST_KEY_ADD, err);
    del = stmt(s, ST_KEY_DEL, err);
    if (add == NULL || del == NULL) {
        return IDS_ESTORE;
    }
    a = keys_sorted(old, &na, &bad_a);
    b = keys_sorted(new, &nb, &bad_b);
    if (bad_a || bad_b) {
        ret = ids_error_set(err, IDS_ESTORE, "store %s: object %" PRId64 ": corrupt join key list",
                            s->path, obj);
    }
    while (ret == IDS_OK && (i < na || j < nb)) {
        int c = i == na ? 1 : j == nb ? -1 : cmp_keyref(&a[i], &b[j]);

        if (c < 0) {
            ret = key_write(s, del, space, obj, &a[i++], false, err);
        } else if (c > 0) {
            ret = key_write(s, add, space, obj, &b[j++], true, err);
        } else {
            i++;
            j++;
        }
    }
    free(a);
    free(b);
    return ret;
}

static void copy_blob(sqlite3_stmt *st, int i, struct strbuf *out)
{
    strbuf_reset(out);
    if (sqlite3_column_type(st, i) != SQLITE_NULL) {
        strbuf_add(out, sqlite3_column_blob(st, i), (size_t)sqlite3_column_bytes(st, i));
    }
}

/* A CS entry is stored without type, anchor and DN (they have columns). */
static void encode_cs_entry(struct entry *e, struct strbuf *out)
{
    char *type = e->type;
    char *anchor = e->anchor;
    char *dn = e->dn;

    e->type = NULL;
    e->anchor = NULL;
    e->dn = NULL;
    strbuf_reset(out);
    entry_encode(e, out);
    e->type = type;
    e->anchor = anchor;
    e->dn = dn;
}

static int64_t dn_key(struct sqlite_store *s, const char *dn)
{
    strbuf_reset(&s->norm);
    value_normalize(&s->norm, dn, strlen(dn));
    return (int64_t)hash64(s->norm.buf, s->norm.len, 0);
}

/* ---- open / close --------------------------------------------------------- */

/* Create the file with mode 0600 (create), or with fix take group/other
 * access away from an existing one: it holds every identity of the
 * directory. An existing file is fixed only once it proved to be an idsync
 * store, so that a mistyped path does not change some other file. */
static enum ids_err secure_file(const char *path, bool create, bool fix, struct ids_error *err)
{
    struct stat st;
    int fd;

    /* Never open() and close() a file SQLite may already have open in this
     * process: close() drops every POSIX lock the process holds on the
     * file, SQLite's included, and another process would then reset the
     * WAL index under a running step. So: create only what does not exist
     * (O_EXCL), and inspect or fix existing files by path. */
    if (create) {
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd); /* new, empty, not yet opened by SQLite */
        } else if (errno != EEXIST) {
            return ids_error_set(err, IDS_EUNREACHABLE, "store %s: cannot create: %s", path,
                                 strerror(errno));
        }
    }
    if (stat(path, &st) != 0) {
        if (!create && errno == ENOENT) {
            return IDS_OK;
        }
        return ids_error_set(err, IDS_EUNREACHABLE, "store %s: cannot open: %s", path,
                             strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return ids_error_set(err, IDS_EUNREACHABLE, "store %s: not a regular file", path);
    }
    if (fix && (st.st_mode & 0077) != 0) {
        if (chmod(path, st.st_mode & 0700) != 0) {
            return ids_error_set(err, IDS_EUNREACHABLE,
                                 "store %s: readable by others and cannot chmod it: %s", path,
                                 strerror(errno));
        }
        log_warn("store", "path=%s msg=\"removed group/other access (mode was %o)\"", path,
                 (unsigned)(st.st_mode & 0777));
    }
    return IDS_OK;
}

/* secure_file(fix) on the database and its -wal and -shm files. */
static enum ids_err secure_files(const char *path, struct ids_error *err)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    struct strbuf p = STRBUF_INIT;
    size_t i;
    enum ids_err ret = IDS_OK;

    for (i = 0; i < ARRAY_SIZE(suffixes) && ret == IDS_OK; i++) {
        strbuf_reset(&p);
        strbuf_addf(&p, "%s%s", path, suffixes[i]);
        ret = secure_file(p.buf, i == 0, true, err);
    }
    strbuf_release(&p);
    return ret;
}

static enum ids_err exec_sql(struct sqlite_store *s, const char *sql, const char *op,
                             struct ids_error *err)
{
    char *msg = NULL;
    int rc;
    enum ids_err ret = IDS_OK;

    rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        ret = ids_error_set_detail(err, IDS_ESTORE, rc, "store %s: %s: %s", s->path, op,
                                   msg ? msg : sqlite3_errstr(rc));
    }
    sqlite3_free(msg);
    return ret;
}

/* One integer from a one-row query (0 when no row). */
static enum ids_err query_int(struct sqlite_store *s, const char *sql, int64_t *out,
                              struct ids_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc;
    enum ids_err ret = IDS_OK;

    *out = 0;
    rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        ret = db_fail(s, rc, "read schema", err);
        goto done;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
    } else if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read schema", err);
    }
done:
    sqlite3_finalize(st);
    return ret;
}

static enum ids_err migrate(struct sqlite_store *s, struct ids_error *err)
{
    int64_t have_meta;
    int64_t version = 0;
    int64_t app_id;
    int64_t ntables;
    struct strbuf sb = STRBUF_INIT;
    enum ids_err ret;

    ret = exec_sql(s, "BEGIN IMMEDIATE", "begin migration", err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = query_int(s, "PRAGMA application_id", &app_id, err);
    if (ret == IDS_OK) {
        ret =
            query_int(s, "SELECT count(*) FROM sqlite_master WHERE type = 'table'", &ntables, err);
    }
    if (ret == IDS_OK) {
        ret = query_int(s,
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                        &have_meta, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    if (app_id != APPLICATION_ID && (app_id != 0 || ntables > 0)) {
        ret = ids_error_set(err, IDS_ESTORE,
                            "store %s: this SQLite database is not an idsync store", s->path);
        goto done;
    }
    if (have_meta) {
        ret = query_int(s, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
                        &version, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    if (version > SCHEMA_VERSION) {
        ret = ids_error_set(err, IDS_ESTORE,
                            "store %s: schema version %" PRId64
                            " is newer than this idsync knows (%ld): upgrade idsync",
                            s->path, version, SCHEMA_VERSION);
        goto done;
    }
    for (; version < SCHEMA_VERSION; version++) {
        log_info("store", "path=%s migrate=%" PRId64 "->%" PRId64, s->path, version, version + 1);
        ret = exec_sql(s, migrations[version], "migrate schema", err);
        if (ret != IDS_OK) {
            goto done;
        }
        strbuf_reset(&sb);
        strbuf_addf(&sb,
                    "INSERT INTO meta(key, value) VALUES ('schema_version', '%" PRId64 "') "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    version + 1);
        ret = exec_sql(s, sb.buf, "migrate schema", err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    if (app_id == 0) {
        strbuf_reset(&sb);
        strbuf_addf(&sb, "PRAGMA application_id = %d", APPLICATION_ID);
        ret = exec_sql(s, sb.buf, "set application id", err);
    }
done:
    if (ret == IDS_OK) {
        ret = exec_sql(s, "COMMIT", "commit migration", err);
    }
    if (ret != IDS_OK && !sqlite3_get_autocommit(s->db)) {
        exec_sql(s, "ROLLBACK", "rollback migration", NULL); /* ret already says what failed */
    }
    strbuf_release(&sb);
    return ret;
}

static void sq_close(struct store *base);

static void set_state_dir(struct sqlite_store *s)
{
    struct strbuf sb = STRBUF_INIT;

    strbuf_addf(&sb, "%s.state", s->path);
    s->state_dir = strbuf_detach(&sb, NULL);
}

/* After each commit in WAL mode: remember the WAL's length, checkpoint
 * (passive) once it reaches WAL_AUTOCHECKPOINT pages. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct sqlite_store *s = arg;

    s->wal_frames = frames;
    if (frames >= WAL_AUTOCHECKPOINT) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    }
    return SQLITE_OK;
}

static enum ids_err sq_open(const char *url, struct store **out, struct ids_error *err)
{
    struct sqlite_store *s = NULL;
    const char *path;
    bool memory;
    int rc;
    enum ids_err ret = IDS_OK;

    *out = NULL;
    if (strncmp(url, "sqlite:", 7) != 0) {
        return ids_error_set(err, IDS_ECONFIG, "store URL '%s': expected sqlite:PATH", url);
    }
    path = url + 7;
    if (strncmp(path, "//", 2) == 0) {
        path += 2;
    }
    if (*path == '\0') {
        return ids_error_set(err, IDS_ECONFIG, "store URL '%s': no file name (sqlite:PATH)", url);
    }
    memory = strcmp(path, ":memory:") == 0;
    if (!memory) {
        ret = secure_file(path, true, false, err);
        if (ret != IDS_OK) {
            return ret;
        }
    }
    /* no global memory statistics (a mutex on every allocation); fails
     * harmlessly once SQLite is initialised */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    s = xcalloc(1, sizeof(*s));
    s->base.ops = &sqlite_store_ops;
    s->path = xstrdup(path);
    rc = sqlite3_open_v2(
        path, &s->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (memory ? SQLITE_OPEN_CREATE : 0), NULL);
    if (rc != SQLITE_OK) {
        ret = ids_error_set_detail(err, IDS_EUNREACHABLE, rc, "store %s: cannot open: %s", path,
                                   s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto done;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    ret = exec_sql(s,
                   /* a new store only (fixed once WAL is on): larger pages mean
                    * fewer B-tree levels and WAL frames per commit, measured
                    * ~40% less CPU for import and sync at 1M objects */
                   "PRAGMA page_size = 16384;"
                   "PRAGMA journal_mode = WAL;"
                   "PRAGMA synchronous = NORMAL;"
                   /* peak RSS must stay under 150 MB at 1M objects: a
                    * 48 MiB cache and no mmap (mapped pages count in RSS;
                    * full import and sync at 1M measured within 7% of a
                    * 112 MiB cache, the import needs none) */
                   "PRAGMA cache_size = -49152;"
                   "PRAGMA temp_store = MEMORY;"
                   "PRAGMA mmap_size = 0;"
                   "PRAGMA wal_autocheckpoint = 16384;" /* WAL_AUTOCHECKPOINT */
                   "PRAGMA journal_size_limit = 268435456;"
                   "PRAGMA foreign_keys = OFF;",
                   "configure", err);
    if (ret != IDS_OK) {
        goto done;
    }
    s->memory = memory;
    if (!memory) {
        set_state_dir(s);
    }
    /* replaces the hook PRAGMA wal_autocheckpoint set: does the same */
    sqlite3_wal_hook(s->db, wal_hook, s);
    ret = migrate(s, err);
    if (ret == IDS_OK && !memory) {
        ret = secure_files(path, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    *out = &s->base;
    s = NULL;
done:
    sq_close(s ? &s->base : NULL);
    return ret;
}

static void sq_dry_run_end(struct store *base);
static void sq_read_end(struct store *base);
static void sq_rollback(struct store *base);
static void lock_release_now(struct sqlite_store *s);

/* Leave the WAL to the next handle instead of checkpointing at close?
 * When it is small: this handle's commits are made durable by one synced
 * commit (synchronous = NORMAL syncs the WAL only at checkpoints). */
static bool keep_wal_at_close(struct sqlite_store *s)
{
    struct strbuf wal = STRBUF_INIT;
    struct stat st;
    bool keep;

    if (s->memory) {
        return false;
    }
    if (s->wal_frames == 0) {
        /* wrote nothing: SQLite's own close (a reader must not wait here
         * for a writer of another thread, as a TRUNCATE checkpoint would) */
        return false;
    }
    /* the file too: SQLite reuses a WAL from its start after a checkpoint
     * without shrinking it, and the next process reads it back */
    strbuf_addf(&wal, "%s-wal", s->path);
    keep = s->wal_frames <= WAL_KEEP_AT_CLOSE &&
           (stat(wal.buf, &st) != 0 || st.st_size <= (off_t)WAL_KEEP_AT_CLOSE * 16384);
    strbuf_release(&wal);
    if (keep) {
        keep = exec_sql(s,
                        "PRAGMA synchronous = FULL;"
                        "UPDATE meta SET value = value WHERE key = 'schema_version';",
                        "close", NULL) == IDS_OK;
    }
    if (!keep) {
        /* the next process would read all of it back (WAL recovery) */
        (void)exec_sql(s, "PRAGMA wal_checkpoint(TRUNCATE);", "close", NULL);
    }
    return keep;
}

static void sq_close(struct store *base)
{
    struct sqlite_store *s = sq(base);
    bool keep_wal;
    size_t i;
    size_t j;

    if (s == NULL) {
        return;
    }
    if (s->db != NULL) {
        if (s->dry_run) {
            sq_dry_run_end(base);
        } else if (s->in_tx) {
            sq_rollback(base);
        } else if (s->in_read) {
            sq_read_end(base);
        }
        if (!sqlite3_get_autocommit(s->db)) {
            exec_sql(s, "ROLLBACK", "rollback at close", NULL); /* nothing to report to */
        }
        s->in_tx = false;
        if (s->lock_held) {
            lock_release_now(s);
        }
        keep_wal = keep_wal_at_close(s);
        if (keep_wal) {
            sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        }
        for (i = 0; i < ST_COUNT; i++) {
            sqlite3_finalize(s->stmts[i]);
        }
        for (i = 0; i < ARRAY_SIZE(s->cs_update); i++) {
            sqlite3_finalize(s->cs_update[i]);
        }
        for (i = 0; i < SEL_COUNT; i++) {
            for (j = 0; j < 2; j++) {
                sqlite3_finalize(s->sel_ids[i][j]);
                sqlite3_finalize(s->sel_count[i][j]);
            }
        }
        sqlite3_close(s->db);
    }
    strbuf_release(&s->enc);
    strbuf_release(&s->pend);
    strbuf_release(&s->unconf);
    strbuf_release(&s->rdelta);
    strbuf_release(&s->keys_new);
    strbuf_release(&s->keys_old);
    strbuf_release(&s->norm);
    strbuf_release(&s->norm2);
    strbuf_release(&s->old.anchor);
    free(s->ops);
    free(s->path);
    free(s->state_dir);
    free(s);
}

/* ---- transactions --------------------------------------------------------- */

static void flush_run_ops(struct sqlite_store *s);

/* Work deferred until no transaction is open: the run history held back
 * and a lock release. */
static void after_tx(struct sqlite_store *s)
{
    if (s->dry_run || s->in_tx || s->in_read) {
        return;
    }
    flush_run_ops(s);
    if (s->release_pending && sqlite3_get_autocommit(s->db)) {
        s->release_pending = false;
        lock_release_now(s);
    }
}

static enum ids_err sq_begin(struct store *base, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    enum ids_err ret;

    if (s->in_tx) {
        return ids_error_set(err, IDS_EINTERNAL, "store_begin: a transaction is already open");
    }
    if (s->in_read) {
        return ids_error_set(err, IDS_EINTERNAL, "store_begin: a read snapshot is open");
    }
    ret = exec_id(s, s->dry_run ? ST_SAVEPOINT : ST_BEGIN, "begin", err);
    if (ret == IDS_OK) {
        s->in_tx = true;
    }
    return ret;
}

static enum ids_err sq_commit(struct store *base, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    enum ids_err ret;

    if (!s->in_tx) {
        return ids_error_set(err, IDS_EINTERNAL, "store_commit: no transaction is open");
    }
    ret = exec_id(s, s->dry_run ? ST_RELEASE : ST_COMMIT, "commit", err);
    if (ret != IDS_OK) {
        /* no caller retries a commit: the transaction ends here (SQLite
         * may have rolled it back already on a full disk, or keeps it
         * open for a retry that never comes) */
        sq_rollback(base);
        return ret;
    }
    s->in_tx = false;
    after_tx(s);
    return IDS_OK;
}

static void sq_rollback(struct store *base)
{
    struct sqlite_store *s = sq(base);

    if (!s->in_tx) {
        return;
    }
    /* a failed rollback has nowhere to report: the transaction is gone
     * either way (SQLite rolls back on close) */
    if (s->dry_run) {
        exec_id(s, ST_ROLLBACK_TO, "rollback", NULL);
        exec_id(s, ST_RELEASE, "rollback", NULL);
    } else if (!sqlite3_get_autocommit(s->db)) {
        exec_id(s, ST_ROLLBACK, "rollback", NULL);
    }
    s->in_tx = false;
    after_tx(s);
}

static enum ids_err sq_dry_run_begin(struct store *base, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    enum ids_err ret;

    if (s->in_tx || s->dry_run || s->in_read) {
        return ids_error_set(err, IDS_EINTERNAL,
                             "store_dry_run_begin: a transaction, dry run or read snapshot is "
                             "already open");
    }
    /* a dry run is one transaction that is never committed: with the
     * journal of its savepoints in memory (temp_store = MEMORY), a dry run
     * that changes every object grows by the pages it changes (+27 MB at
     * 101,000 objects); on file, SQLite keeps it small */
    ret = exec_sql(s, "PRAGMA temp_store = FILE;", "begin dry run", err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = exec_id(s, ST_BEGIN, "begin dry run", err);
    if (ret == IDS_OK) {
        s->dry_run = true;
    }
    return ret;
}

static void sq_dry_run_end(struct store *base)
{
    struct sqlite_store *s = sq(base);

    if (!s->dry_run) {
        return;
    }
    if (!sqlite3_get_autocommit(s->db)) {
        exec_id(s, ST_ROLLBACK, "rollback dry run", NULL); /* see sq_rollback */
    }
    (void)exec_sql(s, "PRAGMA temp_store = MEMORY;", "end dry run", NULL);
    s->dry_run = false;
    s->in_tx = false;
    after_tx(s);
}

static enum ids_err sq_read_begin(struct store *base, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    enum ids_err ret;

    if (s->in_tx || s->dry_run || s->in_read || !sqlite3_get_autocommit(s->db)) {
        return ids_error_set(err, IDS_EINTERNAL,
                             "store_read_begin: a transaction or read snapshot is already open");
    }
    /* deferred: the snapshot is taken by the first read, no lock is held
     * against writers (WAL) */
    ret = exec_id(s, ST_BEGIN_READ, "begin read", err);
    if (ret == IDS_OK) {
        s->in_read = true;
    }
    return ret;
}

static void sq_read_end(struct store *base)
{
    struct sqlite_store *s = sq(base);

    if (!s->in_read) {
        return;
    }
    if (!sqlite3_get_autocommit(s->db)) {
        exec_id(s, ST_ROLLBACK, "end read", NULL); /* nothing was written: nothing to lose */
    }
    s->in_read = false;
    after_tx(s);
}

/* ---- connectors ----------------------------------------------------------- */

static enum ids_err sq_connector_id(struct store *base, const char *name, int64_t *id,
                                    struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    int rc;
    enum ids_err ret = IDS_OK;

    st = stmt(s, ST_CONN_GET, err);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    bind_text(st, 1, name);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return IDS_OK;
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read connector", err);
        sqlite3_reset(st);
        return ret;
    }
    sqlite3_reset(st);
    st = stmt(s, ST_CONN_ADD, err);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    bind_text(st, 1, name);
    ret = run_simple(s, st, "add connector", err);
    if (ret == IDS_OK) {
        *id = sqlite3_last_insert_rowid(s->db);
    }
    return ret;
}

static enum ids_err sq_connector_name(struct store *base, int64_t id, struct strbuf *name,
                                      struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CONN_NAME, err);
    enum ids_err ret = IDS_OK;
    int rc;

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        strbuf_addstr(name, (const char *)sqlite3_column_text(st, 0));
    } else if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "no connector %" PRId64 " in the store", id);
    } else {
        ret = db_fail(s, rc, "read connector", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_connector_next(struct store *base, int64_t after, int64_t *id,
                                      struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CONN_NEXT, err);
    enum ids_err ret = IDS_DONE;
    int rc;

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, after);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        ret = IDS_OK;
    } else if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read connectors", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_connector_find(struct store *base, const char *name, int64_t *id,
                                      struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CONN_GET, err);
    enum ids_err ret = IDS_OK;
    int rc;

    if (st == NULL) {
        return IDS_ESTORE;
    }
    bind_text(st, 1, name);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
    } else if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "the store has no connector space called %s", name);
    } else {
        ret = db_fail(s, rc, "read connector", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_connector_drop(struct store *base, int64_t id, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    bool own = false;
    enum ids_err ret;
    int rc;

    ret = auto_begin(s, &own, err);
    if (ret != IDS_OK) {
        return ret;
    }
    st = stmt(s, ST_CONN_HAS_CS, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        ret = ids_error_set(err, IDS_EEXIST, "connector %" PRId64 " still has objects", id);
        goto done;
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read connector space", err);
        goto done;
    }
    st = stmt(s, ST_WM_DEL, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, id);
    ret = run_simple(s, st, "delete watermark", err);
    if (ret != IDS_OK) {
        goto done;
    }
    st = stmt(s, ST_CONN_DEL, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, id);
    ret = run_simple(s, st, "delete connector", err);
done:
    return auto_end(s, own, ret, err);
}

static enum ids_err sq_connector_rename(struct store *base, int64_t id, const char *name,
                                        struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    int64_t other = 0;
    bool own = false;
    enum ids_err ret;

    ret = auto_begin(s, &own, err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = sq_connector_find(base, name, &other, err);
    if (ret == IDS_OK) {
        ret = ids_error_set(err, IDS_EEXIST, "the store already has a connector called %s", name);
        goto done;
    }
    if (ret != IDS_ENOTFOUND) {
        goto done;
    }
    ids_error_clear(err);
    st = stmt(s, ST_CONN_RENAME, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, name);
    ret = run_simple(s, st, "rename connector", err);
done:
    return auto_end(s, own, ret, err);
}

/* ---- connector space ------------------------------------------------------ */

static enum ids_err corrupt(struct sqlite_store *s, const char *what, int64_t id,
                            const char *anchor, struct ids_error *err)
{
    char msg[IDS_ERROR_MSG_MAX];

    snprintf(msg, sizeof(msg), "%s", err ? err->msg : "corrupt data");
    return ids_error_set(err, IDS_EINPUT, "store %s: %s %" PRId64 " (anchor %s): %s", s->path, what,
                         id, anchor ? anchor : "none", msg);
}

/* Decode change column col of the current row into *out (NULL stays NULL);
 * a BLOB that does not decode names the object (`what` the column). */
static enum ids_err col_change(struct sqlite_store *s, sqlite3_stmt *st, int col,
                               const struct cs_object *o, const char *what, struct change **out,
                               struct ids_error *err)
{
    struct strbuf sb = STRBUF_INIT;
    enum ids_err ret;

    if (sqlite3_column_type(st, col) == SQLITE_NULL) {
        return IDS_OK;
    }
    ret = change_decode(sqlite3_column_blob(st, col), (size_t)sqlite3_column_bytes(st, col), out,
                        err);
    if (ret != IDS_OK) {
        strbuf_addf(&sb, "%s connector-space object", what);
        ret = corrupt(s, sb.buf, o->id, o->anchor, err);
    }
    strbuf_release(&sb);
    return ret;
}

/* Build a cs_object from the current row of a CS_COLS query. */
static enum ids_err row_to_cs(struct sqlite_store *s, sqlite3_stmt *st, struct cs_object **out,
                              struct ids_error *err)
{
    struct cs_object *o = xcalloc(1, sizeof(*o));
    unsigned flags;
    int64_t imp;
    int64_t exp;
    enum ids_err ret = IDS_OK;

    o->id = sqlite3_column_int64(st, 0);
    o->connector = sqlite3_column_int64(st, 1);
    o->mv_id = sqlite3_column_int64(st, 2);
    o->hash = (uint64_t)sqlite3_column_int64(st, 3);
    flags = (unsigned)sqlite3_column_int64(st, 4);
    o->flags = flags & ~CS_STORED_BITS;
    imp = sqlite3_column_int64(st, 5);
    exp = sqlite3_column_int64(st, 6);
    o->export_attempts = sqlite3_column_int(st, 7);
    o->export_run = sqlite3_column_int64(st, 8);
    o->anchor = col_strdup(st, 9);
    o->type = col_strdup(st, 10);
    o->dn = col_strdup(st, 11);
    o->export_error = col_strdup(st, 12);
    if (imp < CS_IMPORT_NONE || imp > CS_IMPORT_DELETE || exp < CS_EXPORT_NONE ||
        exp > CS_EXPORT_FAILED) {
        ids_error_set(err, IDS_EINPUT, "unknown import or export state");
        ret = corrupt(s, "connector-space object", o->id, o->anchor, err);
        goto done;
    }
    o->import_state = (enum cs_import_state)imp;
    o->export_state = (enum cs_export_state)exp;
    if (sqlite3_column_type(st, 13) == SQLITE_NULL) {
        o->entry = entry_new(NULL, NULL, NULL);
    } else {
        ret = entry_decode(sqlite3_column_blob(st, 13), (size_t)sqlite3_column_bytes(st, 13),
                           &o->entry, err);
        if (ret != IDS_OK) {
            ret = corrupt(s, "connector-space object", o->id, o->anchor, err);
            goto done;
        }
    }
    entry_set_type(o->entry, o->type);
    entry_set_anchor(o->entry, o->anchor);
    entry_set_dn(o->entry, o->dn);
    ret = col_change(s, st, 14, o, "pending export of", &o->pending_export, err);
    if (ret == IDS_OK) {
        ret = col_change(s, st, 15, o, "unconfirmed export of", &o->unconfirmed, err);
    }
    if (ret == IDS_OK) {
        ret = col_change(s, st, 16, o, "reference changes of", &o->ref_delta, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
done:
    if (ret != IDS_OK) {
        cs_object_free(o);
        o = NULL;
    }
    *out = o;
    return ret;
}

/* Step a bound CS_COLS statement once: IDS_OK with *out, IDS_ENOTFOUND. */
static enum ids_err fetch_one_cs(struct sqlite_store *s, sqlite3_stmt *st, const char *what,
                                 struct cs_object **out, struct ids_error *err)
{
    int rc;
    enum ids_err ret;

    *out = NULL;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ret = row_to_cs(s, st, out, err);
    } else if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "%s: no such connector-space object", what);
    } else {
        ret = db_fail(s, rc, "read connector-space object", err);
    }
    sqlite3_reset(st);
    return ret;
}

/* A brief from columns 0-4 of the current row: id, hash, mv_id, flags,
 * import_state (ST_CS_BRIEF, ST_CS_BRIEF_BY_DN). */
static void row_to_brief(sqlite3_stmt *st, struct cs_brief *out)
{
    unsigned flags = (unsigned)sqlite3_column_int64(st, 3);
    int64_t imp = sqlite3_column_int64(st, 4);

    out->id = sqlite3_column_int64(st, 0);
    out->hash = (uint64_t)sqlite3_column_int64(st, 1);
    out->mv_id = sqlite3_column_int64(st, 2);
    out->flags = flags & ~CS_STORED_BITS;
    out->has_unconfirmed = (flags & CS_STORED_UNCONFIRMED) != 0;
    out->import_state = imp >= CS_IMPORT_NONE && imp <= CS_IMPORT_DELETE ? (enum cs_import_state)imp
                                                                         : CS_IMPORT_NONE;
}

static enum ids_err sq_cs_brief(struct store *base, int64_t connector, const char *anchor,
                                struct cs_brief *out, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_BRIEF, err);
    int rc;
    enum ids_err ret = IDS_OK;

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    bind_text(st, 2, anchor);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row_to_brief(st, out);
    } else if (rc == SQLITE_DONE) {
        ret =
            ids_error_set(err, IDS_ENOTFOUND, "anchor %s: no such connector-space object", anchor);
    } else {
        ret = db_fail(s, rc, "read connector-space object", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_cs_get(struct store *base, int64_t id, struct cs_object **out,
                              struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_GET, err);
    char what[64];

    *out = NULL;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    snprintf(what, sizeof(what), "id %" PRId64, id);
    return fetch_one_cs(s, st, what, out, err);
}

static enum ids_err sq_cs_get_by_anchor(struct store *base, int64_t connector, const char *anchor,
                                        struct cs_object **out, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_BY_ANCHOR, err);
    char what[64];

    *out = NULL;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    bind_text(st, 2, anchor);
    snprintf(what, sizeof(what), "anchor %.40s", anchor);
    return fetch_one_cs(s, st, what, out, err);
}

static enum ids_err sq_cs_dn_alias(struct store *base, int64_t connector, const char *old_dn,
                                   int64_t id, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_ALIAS_ADD, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    sqlite3_bind_int64(st, 2, dn_key(s, old_dn));
    sqlite3_bind_int64(st, 3, id);
    sqlite3_bind_text(st, 4, s->norm.buf, (int)s->norm.len, SQLITE_STATIC);
    return run_simple(s, st, "record a former DN", err);
}

static enum ids_err sq_cs_get_by_former_dn(struct store *base, int64_t connector, const char *dn,
                                           struct cs_object **out, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_ALIAS_FIND, err);
    int64_t id = 0;
    int rc;

    *out = NULL;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    sqlite3_bind_int64(st, 2, dn_key(s, dn)); /* leaves the normalised DN in s->norm */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *cand = (const char *)sqlite3_column_text(st, 1);

        if (cand != NULL && (size_t)sqlite3_column_bytes(st, 1) == s->norm.len &&
            memcmp(cand, s->norm.buf, s->norm.len) == 0) {
            id = sqlite3_column_int64(st, 0); /* the newest object that had it */
            break;
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return db_fail(s, rc, "read former DNs", err);
    }
    if (id == 0) {
        return ids_error_set(err, IDS_ENOTFOUND, "DN %s: no object had it", dn);
    }
    return sq_cs_get(base, id, out, err);
}

/* Is text column col of the current row, normalised, the DN dn_key() left
 * in s->norm? (A dn_key match is a hash match: this makes it an answer.) */
static bool column_is_dn(struct sqlite_store *s, sqlite3_stmt *st, int col)
{
    const char *cand = (const char *)sqlite3_column_text(st, col);

    if (cand == NULL) {
        return false;
    }
    strbuf_reset(&s->norm2);
    value_normalize(&s->norm2, cand, (size_t)sqlite3_column_bytes(st, col));
    return s->norm2.len == s->norm.len && memcmp(s->norm2.buf, s->norm.buf, s->norm.len) == 0;
}

static enum ids_err sq_cs_get_by_dn(struct store *base, int64_t connector, const char *dn,
                                    struct cs_object **out, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_BY_DN, err);
    int rc;
    enum ids_err ret = IDS_OK;

    *out = NULL;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    sqlite3_bind_int64(st, 2, dn_key(s, dn)); /* leaves the normalised DN in s->norm */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (column_is_dn(s, st, 11)) {
            ret = row_to_cs(s, st, out, err);
            goto done;
        }
    }
    if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "DN %s: no such connector-space object", dn);
    } else {
        ret = db_fail(s, rc, "read connector-space object", err);
    }
done:
    sqlite3_reset(st);
    return ret;
}

/* sq_cs_get_by_dn's object, its brief only: the row is read up to its DN
 * (the small columns come first), no attribute is decoded. */
static enum ids_err brief_by_dn(struct sqlite_store *s, int64_t connector, const char *dn,
                                int64_t not_id, struct cs_brief *out, struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, not_id != 0 ? ST_CS_BRIEF_BY_DN_OTHER : ST_CS_BRIEF_BY_DN, err);
    int rc;
    enum ids_err ret;

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    sqlite3_bind_int64(st, 2, dn_key(s, dn)); /* leaves the normalised DN in s->norm */
    if (not_id != 0) {
        sqlite3_bind_int64(st, 3, not_id);
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (column_is_dn(s, st, 5)) {
            row_to_brief(st, out);
            sqlite3_reset(st);
            return IDS_OK;
        }
    }
    if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "DN %s: no such connector-space object", dn);
    } else {
        ret = db_fail(s, rc, "read connector-space object", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_cs_brief_by_dn(struct store *base, int64_t connector, const char *dn,
                                      struct cs_brief *out, struct ids_error *err)
{
    return brief_by_dn(sq(base), connector, dn, 0, out, err);
}

static enum ids_err sq_cs_brief_by_dn_other(struct store *base, int64_t connector, const char *dn,
                                            int64_t not_id, struct cs_brief *out,
                                            struct ids_error *err)
{
    return brief_by_dn(sq(base), connector, dn, not_id, out, err);
}

static enum ids_err sq_cs_get_by_mv(struct store *base, int64_t connector, int64_t mv_id,
                                    struct cs_object **out, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_BY_MV, err);
    char what[64];

    *out = NULL;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    sqlite3_bind_int64(st, 2, mv_id);
    snprintf(what, sizeof(what), "metaverse object %" PRId64, mv_id);
    return fetch_one_cs(s, st, what, out, err);
}

/* Append text column col of the current row to out; false when NULL. */
static bool column_add(sqlite3_stmt *st, int col, struct strbuf *out)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) {
        return false;
    }
    strbuf_add(out, sqlite3_column_text(st, col), (size_t)sqlite3_column_bytes(st, col));
    return true;
}

/* Step st, a query of (id, anchor, dn, import_state) with at most one row
 * whose id is NULL when there is none (an aggregate). `none` is the
 * message of IDS_ENOTFOUND. id, has_anchor and state may be NULL. */
static enum ids_err step_ident(struct sqlite_store *s, sqlite3_stmt *st, const char *none,
                               int64_t *id, struct strbuf *anchor, bool *has_anchor,
                               struct strbuf *dn, enum cs_import_state *state, bool *renaming,
                               struct ids_error *err)
{
    enum ids_err ret = IDS_OK;
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_NULL) {
        rc = SQLITE_DONE; /* the aggregate's one row: no object */
    }
    if (rc == SQLITE_ROW) {
        bool a = column_add(st, 1, anchor);

        column_add(st, 2, dn);
        if (id != NULL) {
            *id = sqlite3_column_int64(st, 0);
        }
        if (has_anchor != NULL) {
            *has_anchor = a;
        }
        if (state != NULL) {
            *state = (enum cs_import_state)sqlite3_column_int(st, 3);
        }
        if (renaming != NULL) {
            int es = sqlite3_column_int(st, 4);

            /* a rename not sent yet, or sent and not settled */
            *renaming = (es == CS_EXPORT_PENDING || es == CS_EXPORT_INFLIGHT) &&
                        ((uint64_t)sqlite3_column_int64(st, 5) & CS_STORED_RENAME) != 0;
        }
    } else if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "%s", none);
    } else {
        ret = db_fail(s, rc, "read connector-space object", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_cs_ref_by_mv(struct store *base, int64_t connector, int64_t mv_id,
                                    int64_t *id, struct strbuf *anchor, struct strbuf *dn,
                                    struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_REF_BY_MV, err);
    char none[96];

    *id = 0;
    strbuf_reset(anchor);
    strbuf_reset(dn);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    sqlite3_bind_int64(st, 2, mv_id);
    snprintf(none, sizeof(none), "metaverse object %" PRId64 ": no connector-space object joined",
             mv_id);
    return step_ident(s, st, none, id, anchor, NULL, dn, NULL, NULL, err);
}

static const char *sq_state_dir(struct store *base)
{
    return sq(base)->state_dir;
}

/* Read the stored connector and join keys of CS object `id` into s->keys_old. */
static enum ids_err read_cs_keys(struct sqlite_store *s, int64_t id, int64_t *connector,
                                 struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_CS_KEYS_OF, err);
    int rc;
    enum ids_err ret = IDS_OK;

    strbuf_reset(&s->keys_old);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *connector = sqlite3_column_int64(st, 0);
        copy_blob(st, 1, &s->keys_old);
    } else if (rc == SQLITE_DONE) {
        ret =
            ids_error_set(err, IDS_ENOTFOUND, "id %" PRId64 ": no such connector-space object", id);
    } else {
        ret = db_fail(s, rc, "read join keys", err);
    }
    sqlite3_reset(st);
    return ret;
}

/* Read the indexed columns of CS object `id` into s->old (and its join
 * keys into s->keys_old when with_keys). */
static enum ids_err read_cs_old(struct sqlite_store *s, int64_t id, bool with_keys,
                                struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_CS_OLD, err);
    struct cs_old *old = &s->old;
    int rc;
    enum ids_err ret = IDS_OK;

    strbuf_reset(&s->keys_old);
    strbuf_reset(&old->anchor);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        old->connector = sqlite3_column_int64(st, 0);
        old->has_anchor = sqlite3_column_type(st, 1) != SQLITE_NULL;
        if (old->has_anchor) {
            strbuf_add(&old->anchor, sqlite3_column_text(st, 1),
                       (size_t)sqlite3_column_bytes(st, 1));
        }
        old->has_dn_key = sqlite3_column_type(st, 2) != SQLITE_NULL;
        old->dn_key = sqlite3_column_int64(st, 2);
        old->mv_id = sqlite3_column_int64(st, 3);
        old->import_state = sqlite3_column_int64(st, 4);
        old->export_state = sqlite3_column_int64(st, 5);
        if (with_keys) {
            copy_blob(st, 6, &s->keys_old);
        }
    } else if (rc == SQLITE_DONE) {
        ret =
            ids_error_set(err, IDS_ENOTFOUND, "id %" PRId64 ": no such connector-space object", id);
    } else {
        ret = db_fail(s, rc, "read connector-space object", err);
    }
    sqlite3_reset(st);
    return ret;
}

/* Which indexed columns of s->old differ in o. */
static unsigned cs_changed(const struct sqlite_store *s, const struct cs_object *o, bool has_dn_key,
                           int64_t new_dn_key)
{
    const struct cs_old *old = &s->old;
    unsigned mask = 0;

    if (old->connector != o->connector) {
        return CS_UPD_ALL;
    }
    if (old->has_anchor != (o->anchor != NULL) ||
        (o->anchor != NULL && strcmp(old->anchor.buf, o->anchor) != 0)) {
        mask |= CS_UPD_ANCHOR;
    }
    if (old->has_dn_key != has_dn_key || (has_dn_key && old->dn_key != new_dn_key)) {
        mask |= CS_UPD_DN_KEY;
    }
    if (old->mv_id != o->mv_id) {
        mask |= CS_UPD_MV;
    }
    if (old->import_state != (int64_t)o->import_state) {
        mask |= CS_UPD_IMPORT;
    }
    if (old->export_state != (int64_t)o->export_state) {
        mask |= CS_UPD_EXPORT;
    }
    return mask;
}

/* The UPDATE for a mask of changed indexed columns; parameters as
 * ST_CS_INSERT, plus ?18 = id and ?19 = replace the join keys. */
static sqlite3_stmt *cs_update_stmt(struct sqlite_store *s, unsigned mask, struct ids_error *err)
{
    struct strbuf sql = STRBUF_INIT;

    if (s->cs_update[mask] != NULL) {
        return s->cs_update[mask];
    }
    strbuf_addstr(&sql, "UPDATE cs SET hash = ?3, flags = ?4, attempts = ?7, export_run = ?8, "
                        "type = ?11, dn = ?12, export_error = ?13, "
                        "jkeys = CASE WHEN ?19 THEN ?14 ELSE jkeys END, entry = ?15, "
                        "pending = ?16, unconfirmed = ?17, refdelta = ?20");
    if (mask & CS_UPD_CONNECTOR) {
        strbuf_addstr(&sql, ", connector = ?1");
    }
    if (mask & CS_UPD_MV) {
        strbuf_addstr(&sql, ", mv_id = ?2");
    }
    if (mask & CS_UPD_IMPORT) {
        strbuf_addstr(&sql, ", import_state = ?5");
    }
    if (mask & CS_UPD_EXPORT) {
        strbuf_addstr(&sql, ", export_state = ?6");
    }
    if (mask & CS_UPD_DN_KEY) {
        strbuf_addstr(&sql, ", dn_key = ?9");
    }
    if (mask & CS_UPD_ANCHOR) {
        strbuf_addstr(&sql, ", anchor = ?10");
    }
    strbuf_addstr(&sql, " WHERE id = ?18");
    s->cs_update[mask] = prepare(s, sql.buf, err);
    strbuf_release(&sql);
    return s->cs_update[mask];
}

/* Is `anchor` of `connector` held by an object other than `self`? (The
 * anchor's uniqueness: checked here, through cs_brief, rather than by a
 * unique index of its own.) */
static enum ids_err anchor_taken(struct sqlite_store *s, int64_t connector, const char *anchor,
                                 int64_t self, bool *taken, struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_CS_BRIEF, err);
    enum ids_err ret = IDS_OK;
    int rc;

    *taken = false;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    bind_text(st, 2, anchor);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_int64(st, 0) != self) {
            *taken = true;
            break;
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read connector-space object", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err cs_write(struct store *base, struct cs_object *o, const struct store_keys *keys,
                             bool anchor_free, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    bool own = false;
    bool update = o->id != 0;
    int64_t new_dn_key = o->dn != NULL ? dn_key(s, o->dn) : 0;
    unsigned mask = 0;
    bool taken = false;
    int rc;
    enum ids_err ret;

    ret = auto_begin(s, &own, err);
    if (ret != IDS_OK) {
        return ret;
    }
    if (update) {
        ret = read_cs_old(s, o->id, keys != NULL, err);
        if (ret != IDS_OK) {
            goto done;
        }
        mask = cs_changed(s, o, o->dn != NULL, new_dn_key);
        st = cs_update_stmt(s, mask, err);
    } else {
        st = stmt(s, ST_CS_INSERT, err);
    }
    if (o->anchor != NULL && !anchor_free &&
        (!update || (mask & (CS_UPD_ANCHOR | CS_UPD_CONNECTOR)))) {
        ret = anchor_taken(s, o->connector, o->anchor, o->id, &taken, err);
        if (ret == IDS_OK && taken) {
            ret =
                ids_error_set(err, IDS_EEXIST,
                              "connector %" PRId64 ": anchor %s already belongs to another object",
                              o->connector, o->anchor);
        }
        if (ret != IDS_OK) {
            goto done;
        }
    }
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    if (o->entry != NULL) {
        encode_cs_entry(o->entry, &s->enc);
    } else {
        strbuf_reset(&s->enc);
    }
    strbuf_reset(&s->pend);
    if (o->pending_export != NULL) {
        change_encode(o->pending_export, &s->pend);
    }
    strbuf_reset(&s->unconf);
    if (o->unconfirmed != NULL) {
        change_encode(o->unconfirmed, &s->unconf);
    }
    strbuf_reset(&s->rdelta);
    if (o->ref_delta != NULL) {
        change_encode(o->ref_delta, &s->rdelta);
    }
    strbuf_reset(&s->keys_new);
    if (keys != NULL) {
        encode_keys(keys, &s->keys_new, &s->norm);
    }
    sqlite3_bind_int64(st, 1, o->connector);
    sqlite3_bind_int64(st, 2, o->mv_id);
    sqlite3_bind_int64(st, 3, (int64_t)o->hash);
    sqlite3_bind_int64(st, 4, stored_flags(o));
    sqlite3_bind_int(st, 5, (int)o->import_state);
    sqlite3_bind_int(st, 6, (int)o->export_state);
    sqlite3_bind_int(st, 7, o->export_attempts);
    sqlite3_bind_int64(st, 8, o->export_run);
    if (o->dn != NULL) {
        sqlite3_bind_int64(st, 9, new_dn_key);
    } else {
        sqlite3_bind_null(st, 9);
    }
    bind_text(st, 10, o->anchor);
    bind_text(st, 11, o->type);
    bind_text(st, 12, o->dn);
    bind_text(st, 13, o->export_error);
    bind_buf(st, 14, &s->keys_new, true);
    if (o->entry != NULL) {
        bind_buf(st, 15, &s->enc, false);
    } else {
        sqlite3_bind_null(st, 15);
    }
    bind_buf(st, 16, &s->pend, true);
    bind_buf(st, 17, &s->unconf, true);
    bind_buf(st, 20, &s->rdelta, true);
    if (update) {
        sqlite3_bind_int64(st, 18, o->id);
        sqlite3_bind_int(st, 19, keys != NULL);
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        if (is_unique_violation(rc)) {
            ret = ids_error_set_detail(err, IDS_EEXIST, rc,
                                       "connector %" PRId64
                                       ": anchor %s already belongs to another object",
                                       o->connector, o->anchor ? o->anchor : "(none)");
        } else {
            ret = db_fail(s, rc, "write connector-space object", err);
        }
        sqlite3_reset(st);
        goto done;
    }
    sqlite3_reset(st);
    if (!update) {
        o->id = sqlite3_last_insert_rowid(s->db);
        if (keys != NULL) {
            ret = apply_keys(s, o->connector, o->id, &s->keys_new, true, err);
        }
    } else if (keys != NULL) {
        ret =
            replace_keys(s, s->old.connector, o->connector, o->id, &s->keys_old, &s->keys_new, err);
    }
done:
    return auto_end(s, own, ret, err);
}

static enum ids_err sq_cs_put(struct store *base, struct cs_object *o,
                              const struct store_keys *keys, struct ids_error *err)
{
    return cs_write(base, o, keys, false, err);
}

static enum ids_err sq_cs_insert_new(struct store *base, struct cs_object *o,
                                     const struct store_keys *keys, struct ids_error *err)
{
    return cs_write(base, o, keys, true, err);
}

/* Run st, an UPDATE of the export columns of CS object `id`:
 * IDS_ENOTFOUND when there is no such object. */
static enum ids_err update_one(struct sqlite_store *s, sqlite3_stmt *st, int64_t id,
                               struct ids_error *err)
{
    enum ids_err ret = run_simple(s, st, "write export state", err);

    if (ret == IDS_OK && sqlite3_changes(s->db) == 0) {
        ret =
            ids_error_set(err, IDS_ENOTFOUND, "id %" PRId64 ": no such connector-space object", id);
    }
    return ret;
}

static enum ids_err sq_cs_put_export(struct store *base, const struct cs_object *o,
                                     struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_PUT_EXPORT, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    strbuf_reset(&s->pend);
    if (o->pending_export != NULL) {
        change_encode(o->pending_export, &s->pend);
    }
    sqlite3_bind_int64(st, 1, o->id);
    sqlite3_bind_int(st, 2, (int)o->export_state);
    bind_buf(st, 3, &s->pend, true);
    sqlite3_bind_int(st, 4, o->export_attempts);
    bind_text(st, 5, o->export_error);
    sqlite3_bind_int64(st, 6, o->export_run);
    /* of the flags, only the stored rename bit follows the pending change */
    sqlite3_bind_int64(st, 7, stored_flags(o) & CS_STORED_RENAME);
    sqlite3_bind_int64(st, 8, CS_STORED_RENAME);
    return update_one(s, st, o->id, err);
}

static enum ids_err sq_cs_ident(struct store *base, int64_t id, struct strbuf *anchor,
                                bool *has_anchor, struct strbuf *dn, enum cs_import_state *state,
                                bool *renaming, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_IDENT, err);
    char none[96];

    strbuf_reset(anchor);
    strbuf_reset(dn);
    *has_anchor = false;
    *state = CS_IMPORT_NONE;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    snprintf(none, sizeof(none), "id %" PRId64 ": no such connector-space object", id);
    return step_ident(s, st, none, NULL, anchor, has_anchor, dn, state, renaming, err);
}

static enum ids_err sq_cs_put_link(struct store *base, const struct cs_object *o,
                                   struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_PUT_LINK, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, o->id);
    sqlite3_bind_int64(st, 2, o->mv_id);
    sqlite3_bind_int64(st, 3, stored_flags(o));
    sqlite3_bind_int(st, 4, (int)o->import_state);
    strbuf_reset(&s->rdelta);
    if (o->ref_delta != NULL) {
        change_encode(o->ref_delta, &s->rdelta);
    }
    bind_buf(st, 5, &s->rdelta, true);
    return update_one(s, st, o->id, err);
}

static enum ids_err sq_cs_set_export_state(struct store *base, int64_t id,
                                           enum cs_export_state state, int64_t run,
                                           struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_SET_EXPORT_STATE, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, (int)state);
    sqlite3_bind_int64(st, 3, run);
    return update_one(s, st, id, err);
}

static enum ids_err sq_cs_delete(struct store *base, int64_t id, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    int64_t connector = 0;
    bool own = false;
    enum ids_err ret;

    ret = auto_begin(s, &own, err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = read_cs_keys(s, id, &connector, err);
    if (ret != IDS_OK) {
        goto done;
    }
    ret = apply_keys(s, connector, id, &s->keys_old, false, err);
    if (ret != IDS_OK) {
        goto done;
    }
    st = stmt(s, ST_REF_CLEAR, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, connector);
    sqlite3_bind_int64(st, 2, id);
    ret = run_simple(s, st, "delete reference waits", err);
    if (ret != IDS_OK) {
        goto done;
    }
    st = stmt(s, ST_ALIAS_CLEAR, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, id);
    ret = run_simple(s, st, "delete former DNs", err);
    if (ret != IDS_OK) {
        goto done;
    }
    st = stmt(s, ST_CS_DELETE, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, id);
    ret = run_simple(s, st, "delete connector-space object", err);
done:
    return auto_end(s, own, ret, err);
}

/* Collect the first column of every row (ids) into ids[0..max). *n counts
 * every row when count_all, else stops at max. */
static enum ids_err collect_ids(struct sqlite_store *s, sqlite3_stmt *st, int64_t *ids, size_t max,
                                size_t *n, bool count_all, struct ids_error *err)
{
    size_t k = 0;
    int rc;
    enum ids_err ret = IDS_OK;

    for (;;) {
        if (k >= max && !count_all) {
            rc = SQLITE_DONE;
            break;
        }
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            break;
        }
        if (k < max) {
            ids[k] = sqlite3_column_int64(st, 0);
        }
        k++;
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read ids", err);
        k = 0;
    }
    sqlite3_reset(st);
    *n = k;
    return ret;
}

static enum ids_err sel_stmt(struct sqlite_store *s, enum store_sel sel, bool all, bool count,
                             sqlite3_stmt **out, struct ids_error *err)
{
    sqlite3_stmt **slot;
    const struct sel_sql *q;
    struct strbuf sql = STRBUF_INIT;

    *out = NULL;
    if ((unsigned)sel >= SEL_COUNT) {
        return ids_error_set(err, IDS_EINVAL, "store: unknown selection %d", (int)sel);
    }
    q = &sel_sqls[sel];
    slot = count ? &s->sel_count[sel][all] : &s->sel_ids[sel][all];
    if (*slot == NULL) {
        strbuf_addf(&sql, "SELECT %s FROM %s WHERE %s%s", count ? "count(*)" : "id",
                    all ? q->from_all : q->from_one, all ? "1" : "connector = ?1", q->cond);
        if (!count) {
            strbuf_addstr(&sql, " AND id > ?2 ORDER BY id LIMIT ?3");
        }
        *slot = prepare(s, sql.buf, err);
        strbuf_release(&sql);
        if (*slot == NULL) {
            return IDS_ESTORE;
        }
    }
    *out = *slot;
    return IDS_OK;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* A pending selection over every connector: each connector's partial index
 * answers for itself (up to max each), and the smallest max ids win. Costs
 * connectors * max per page, never a scan of the table. */
static enum ids_err cs_ids_every_connector(struct sqlite_store *s, enum store_sel sel,
                                           int64_t after, int64_t *ids, size_t max, size_t *n,
                                           struct ids_error *err)
{
    sqlite3_stmt *conns;
    sqlite3_stmt *st;
    int64_t *all = NULL;
    size_t nall = 0;
    size_t alloc = 0;
    int rc = SQLITE_DONE;
    enum ids_err ret;

    ret = sel_stmt(s, sel, false, false, &st, err);
    if (ret != IDS_OK) {
        return ret;
    }
    conns = stmt(s, ST_CONN_ALL, err);
    if (conns == NULL) {
        return IDS_ESTORE;
    }
    for (;;) {
        size_t got = 0;

        rc = sqlite3_step(conns);
        if (rc != SQLITE_ROW) {
            break;
        }
        ALLOC_GROW(all, nall + max, alloc);
        sqlite3_bind_int64(st, 1, sqlite3_column_int64(conns, 0));
        sqlite3_bind_int64(st, 2, after);
        sqlite3_bind_int64(st, 3, (int64_t)max);
        ret = collect_ids(s, st, all + nall, max, &got, false, err);
        if (ret != IDS_OK) {
            break;
        }
        nall += got;
    }
    if (ret == IDS_OK && rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read connectors", err);
    }
    sqlite3_reset(conns);
    if (ret == IDS_OK) {
        qsort(all, nall, sizeof(*all), cmp_id);
        *n = nall < max ? nall : max;
        if (*n > 0) {
            memcpy(ids, all, *n * sizeof(*ids));
        }
    }
    free(all);
    return ret;
}

static enum ids_err sq_cs_ids(struct store *base, int64_t connector, enum store_sel sel,
                              int64_t after, int64_t *ids, size_t max, size_t *n,
                              struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    enum ids_err ret;

    *n = 0;
    if (connector == 0 && max > 0 &&
        (sel == STORE_SEL_PENDING_IMPORT || sel == STORE_SEL_PENDING_EXPORT ||
         sel == STORE_SEL_INFLIGHT)) {
        return cs_ids_every_connector(s, sel, after, ids, max, n, err);
    }
    ret = sel_stmt(s, sel, connector == 0, false, &st, err);
    if (ret != IDS_OK) {
        return ret;
    }
    if (connector != 0) {
        sqlite3_bind_int64(st, 1, connector);
    }
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int64(st, 3, (int64_t)max);
    return collect_ids(s, st, ids, max, n, false, err);
}

static enum ids_err count_query(struct sqlite_store *s, sqlite3_stmt *st, long *n,
                                struct ids_error *err)
{
    int rc;
    enum ids_err ret = IDS_OK;

    *n = 0;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *n = (long)sqlite3_column_int64(st, 0);
    } else {
        ret = db_fail(s, rc, "count", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_cs_count(struct store *base, int64_t connector, enum store_sel sel, long *n,
                                struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    enum ids_err ret;

    *n = 0;
    ret = sel_stmt(s, sel, connector == 0, true, &st, err);
    if (ret != IDS_OK) {
        return ret;
    }
    if (connector != 0) {
        sqlite3_bind_int64(st, 1, connector);
    }
    return count_query(s, st, n, err);
}

static enum ids_err sq_cs_count_exports(struct store *base, int64_t connector, long *pending,
                                        long *deletes, long *disables, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_PENDING_OPS, err);
    enum ids_err ret = IDS_OK;
    int rc;

    *pending = 0;
    *deletes = 0;
    *disables = 0;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const void *p = sqlite3_column_blob(st, 0);
        int op = change_encoded_op(p, (size_t)sqlite3_column_bytes(st, 0));

        (*pending)++;
        if (op == CHANGE_DELETE) {
            (*deletes)++;
        } else if (op == CHANGE_MODIFY && (sqlite3_column_int64(st, 1) & CS_DISABLED) &&
                   !(sqlite3_column_int64(st, 1) & CS_LEAVER_MOVE) &&
                   sqlite3_column_int64(st, 2) == 0) {
            (*disables)++;
        }
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "count pending exports", err);
    }
    sqlite3_reset(st);
    return ret;
}

/* Up to 256 runs older than before_us and their errors, in one transaction;
 * *done when none was left. */
static enum ids_err prune_some(struct sqlite_store *s, int64_t before_us, long *runs, long *errors,
                               bool *done, struct ids_error *err)
{
    sqlite3_stmt *old = stmt(s, ST_RUN_OLD, err);
    sqlite3_stmt *del_err = stmt(s, ST_ERR_DEL_RUN, err);
    sqlite3_stmt *del_run = stmt(s, ST_RUN_DEL, err);
    int64_t ids[256];
    size_t n = 0;
    size_t i;
    enum ids_err ret = IDS_OK;
    int rc = SQLITE_DONE;

    if (old == NULL || del_err == NULL || del_run == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(old, 1, before_us);
    while (n < ARRAY_SIZE(ids) && (rc = sqlite3_step(old)) == SQLITE_ROW) {
        ids[n++] = sqlite3_column_int64(old, 0);
    }
    if (n < ARRAY_SIZE(ids) && rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "old runs", err);
    }
    sqlite3_reset(old);
    *done = n == 0;
    for (i = 0; ret == IDS_OK && i < n; i++) {
        sqlite3_bind_int64(del_err, 1, ids[i]);
        ret = run_simple(s, del_err, "remove the errors of an old run", err);
        if (ret == IDS_OK) {
            *errors += sqlite3_changes(s->db);
            sqlite3_bind_int64(del_run, 1, ids[i]);
            ret = run_simple(s, del_run, "remove an old run", err);
            *runs += ret == IDS_OK ? sqlite3_changes(s->db) : 0;
        }
    }
    return ret;
}

static enum ids_err sq_runs_prune(struct store *base, int64_t before_us, long *runs, long *errors,
                                  struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    enum ids_err ret = IDS_OK;
    bool done = false;

    *runs = 0;
    *errors = 0;
    if (s->in_tx || s->in_read || s->dry_run) {
        return ids_error_set(err, IDS_EINTERNAL,
                             "store_runs_prune: a transaction, dry run or read snapshot is open");
    }
    while (ret == IDS_OK && !done) {
        ret = sq_begin(base, err);
        if (ret != IDS_OK) {
            break;
        }
        ret = prune_some(s, before_us, runs, errors, &done, err);
        if (ret == IDS_OK) {
            ret = sq_commit(base, err);
        } else {
            sq_rollback(base);
        }
    }
    return ret;
}

/* Bind attr (lower-cased into s->norm2) and the normalised value (s->norm). */
static void bind_key(struct sqlite_store *s, sqlite3_stmt *st, int iattr, const char *attr,
                     int ivalue, const char *value)
{
    strbuf_reset(&s->norm2);
    strbuf_addstr(&s->norm2, attr);
    strbuf_tolower(&s->norm2);
    strbuf_reset(&s->norm);
    value_normalize(&s->norm, value, strlen(value));
    sqlite3_bind_text(st, iattr, s->norm2.buf, (int)s->norm2.len, SQLITE_STATIC);
    sqlite3_bind_text(st, ivalue, s->norm.buf, (int)s->norm.len, SQLITE_STATIC);
}

static enum ids_err sq_cs_find(struct store *base, int64_t connector, const char *attr,
                               const char *value, int64_t *ids, size_t max, size_t *n,
                               struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;

    *n = 0;
    if (connector <= 0) {
        return ids_error_set(err, IDS_EINVAL, "store_cs_find: no connector");
    }
    st = stmt(s, ST_KEY_FIND, err);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    bind_key(s, st, 2, attr, 3, value);
    return collect_ids(s, st, ids, max, n, true, err);
}

static enum ids_err sq_cs_links(struct store *base, int64_t mv_id, int64_t *ids, size_t max,
                                size_t *n, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_CS_LINKS, err);

    *n = 0;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, mv_id);
    return collect_ids(s, st, ids, max, n, true, err); /* *n: all of them */
}

/* ---- metaverse ------------------------------------------------------------ */

static enum ids_err sq_mv_get(struct store *base, int64_t id, struct mv_object **out,
                              struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_MV_GET, err);
    struct mv_object *o = NULL;
    int rc;
    enum ids_err ret = IDS_OK;

    *out = NULL;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "metaverse object %" PRId64 ": no such object", id);
        goto done;
    }
    if (rc != SQLITE_ROW) {
        ret = db_fail(s, rc, "read metaverse object", err);
        goto done;
    }
    o = xcalloc(1, sizeof(*o));
    o->id = sqlite3_column_int64(st, 0);
    o->type = col_strdup(st, 1);
    o->created_run = sqlite3_column_int64(st, 2);
    o->updated_run = sqlite3_column_int64(st, 3);
    if (sqlite3_column_type(st, 4) == SQLITE_NULL) {
        o->entry = entry_new(o->type, NULL, NULL);
    } else {
        ret = entry_decode(sqlite3_column_blob(st, 4), (size_t)sqlite3_column_bytes(st, 4),
                           &o->entry, err);
        if (ret != IDS_OK) {
            ret = corrupt(s, "metaverse object", id, NULL, err);
            goto done;
        }
    }
done:
    sqlite3_reset(st);
    if (ret != IDS_OK) {
        mv_object_free(o);
        o = NULL;
    }
    *out = o;
    return ret;
}

static enum ids_err read_mv_keys(struct sqlite_store *s, int64_t id, struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_MV_KEYS_OF, err);
    int rc;
    enum ids_err ret = IDS_OK;

    strbuf_reset(&s->keys_old);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_blob(st, 0, &s->keys_old);
    } else if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "metaverse object %" PRId64 ": no such object", id);
    } else {
        ret = db_fail(s, rc, "read join keys", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_mv_put(struct store *base, struct mv_object *o,
                              const struct store_keys *keys, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    bool own = false;
    bool update = o->id != 0;
    enum ids_err ret;

    ret = auto_begin(s, &own, err);
    if (ret != IDS_OK) {
        return ret;
    }
    if (update && keys != NULL) {
        ret = read_mv_keys(s, o->id, err);
        if (ret != IDS_OK) {
            goto done;
        }
    }
    st = stmt(s, update ? ST_MV_UPDATE : ST_MV_INSERT, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    strbuf_reset(&s->enc);
    if (o->entry != NULL) {
        entry_encode(o->entry, &s->enc);
    }
    strbuf_reset(&s->keys_new);
    if (keys != NULL) {
        encode_keys(keys, &s->keys_new, &s->norm);
    }
    bind_text(st, 1, o->type ? o->type : "");
    sqlite3_bind_int64(st, 2, o->created_run);
    sqlite3_bind_int64(st, 3, o->updated_run);
    bind_buf(st, 4, &s->keys_new, true);
    bind_buf(st, 5, &s->enc, true);
    if (update) {
        sqlite3_bind_int64(st, 6, o->id);
        sqlite3_bind_int(st, 7, keys != NULL);
    }
    ret = run_simple(s, st, "write metaverse object", err);
    if (ret != IDS_OK) {
        goto done;
    }
    if (update && sqlite3_changes(s->db) == 0) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "metaverse object %" PRId64 ": no such object",
                            o->id);
        goto done;
    }
    if (!update) {
        o->id = sqlite3_last_insert_rowid(s->db);
        if (keys != NULL) {
            ret = apply_keys(s, 0, o->id, &s->keys_new, true, err);
        }
    } else if (keys != NULL) {
        ret = replace_keys(s, 0, 0, o->id, &s->keys_old, &s->keys_new, err);
    }
done:
    return auto_end(s, own, ret, err);
}

/* Index (add) or unindex the values of `a` as reference keys `attr` of
 * MV object mv: joinkey rows (0, attr, value, mv), normalised as join keys
 * are. */
static enum ids_err refs_write(struct sqlite_store *s, int64_t mv, const char *attr,
                               const struct attr *a, bool add, struct ids_error *err)
{
    sqlite3_stmt *st;
    struct keyref k;
    enum ids_err ret = IDS_OK;
    size_t i;

    if (a == NULL || a->nvals == 0) {
        return IDS_OK;
    }
    st = stmt(s, add ? ST_KEY_ADD : ST_KEY_DEL, err);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    strbuf_reset(&s->norm2);
    strbuf_addstr(&s->norm2, attr);
    strbuf_tolower(&s->norm2);
    k.attr = s->norm2.buf;
    k.alen = (int)s->norm2.len;
    for (i = 0; ret == IDS_OK && i < a->nvals; i++) {
        strbuf_reset(&s->norm);
        value_normalize(&s->norm, a->vals[i].data, a->vals[i].len);
        if (s->norm.len == 0) {
            continue;
        }
        k.val = s->norm.buf;
        k.vlen = (int)s->norm.len;
        ret = key_write(s, st, 0, mv, &k, add, err);
    }
    return ret;
}

static enum ids_err sq_mv_refs(struct store *base, int64_t mv, const char *attr,
                               const struct attr *add, const struct attr *del,
                               struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    bool own = false;
    enum ids_err ret;

    ret = auto_begin(s, &own, err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = refs_write(s, mv, attr, del, false, err);
    if (ret == IDS_OK) {
        ret = refs_write(s, mv, attr, add, true, err);
    }
    return auto_end(s, own, ret, err);
}

/* Unindex the reference values (ATTR_REF) of MV object id. */
static enum ids_err drop_mv_refs(struct sqlite_store *s, int64_t id, struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_MV_ENTRY_OF, err);
    struct entry *e = NULL;
    enum ids_err ret = IDS_OK;
    int rc;
    size_t i;

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) > 0) {
        ret =
            entry_decode(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), &e, err);
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read metaverse object", err);
    }
    sqlite3_reset(st);
    for (i = 0; ret == IDS_OK && e != NULL && i < e->nattrs; i++) {
        if (e->attrs[i].flags & ATTR_REF) {
            ret = refs_write(s, id, e->attrs[i].name, &e->attrs[i], false, err);
        }
    }
    entry_free(e);
    return ret;
}

static enum ids_err sq_mv_delete(struct store *base, int64_t id, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    bool own = false;
    enum ids_err ret;

    ret = auto_begin(s, &own, err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = read_mv_keys(s, id, err);
    if (ret == IDS_OK) {
        ret = apply_keys(s, 0, id, &s->keys_old, false, err);
    }
    if (ret == IDS_OK) {
        ret = drop_mv_refs(s, id, err);
    }
    if (ret != IDS_OK) {
        goto done;
    }
    st = stmt(s, ST_REF_CLEAR, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, 0);
    sqlite3_bind_int64(st, 2, id);
    ret = run_simple(s, st, "delete reference waits", err);
    if (ret != IDS_OK) {
        goto done;
    }
    st = stmt(s, ST_MV_DELETE, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    sqlite3_bind_int64(st, 1, id);
    ret = run_simple(s, st, "delete metaverse object", err);
done:
    return auto_end(s, own, ret, err);
}

static enum ids_err sq_mv_find(struct store *base, const char *type, const char *attr,
                               const char *value, int64_t *ids, size_t max, size_t *n,
                               struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_MV_FIND, err);

    *n = 0;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    bind_key(s, st, 1, attr, 2, value);
    bind_text(st, 3, type);
    return collect_ids(s, st, ids, max, n, true, err);
}

static enum ids_err sq_mv_ids(struct store *base, const char *type, int64_t after, int64_t *ids,
                              size_t max, size_t *n, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_MV_IDS, err);

    *n = 0;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    bind_text(st, 3, type);
    return collect_ids(s, st, ids, max, n, false, err);
}

static enum ids_err sq_mv_count(struct store *base, long *n, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_MV_COUNT, err);

    *n = 0;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    return count_query(s, st, n, err);
}

static bool entry_has_normalised(const struct entry *e, const char *attr, const struct strbuf *want,
                                 struct strbuf *scratch)
{
    const struct attr *a = entry_attr(e, attr);
    size_t i;

    if (a == NULL) {
        return false;
    }
    for (i = 0; i < a->nvals; i++) {
        strbuf_reset(scratch);
        value_normalize(scratch, a->vals[i].data, a->vals[i].len);
        if (scratch->len == want->len && memcmp(scratch->buf, want->buf, want->len) == 0) {
            return true;
        }
    }
    return false;
}

static enum ids_err sq_mv_search(struct store *base, const char *attr, const char *value,
                                 int64_t after, int64_t *ids, size_t max, size_t *n,
                                 struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    bool keyed = false;
    size_t k = 0;
    int rc = SQLITE_DONE;
    enum ids_err ret = IDS_OK;

    *n = 0;
    st = stmt(s, ST_MV_KEYED, err);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    strbuf_reset(&s->norm2);
    strbuf_addstr(&s->norm2, attr);
    strbuf_tolower(&s->norm2);
    sqlite3_bind_text(st, 1, s->norm2.buf, (int)s->norm2.len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        keyed = true;
    } else if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "search metaverse", err);
    }
    sqlite3_reset(st);
    if (ret != IDS_OK) {
        return ret;
    }
    if (keyed) {
        st = stmt(s, ST_MV_SEARCH_KEY, err);
        if (st == NULL) {
            return IDS_ESTORE;
        }
        bind_key(s, st, 1, attr, 2, value);
        sqlite3_bind_int64(st, 3, after);
        sqlite3_bind_int64(st, 4, (int64_t)max);
        return collect_ids(s, st, ids, max, n, false, err);
    }
    /* no join key for attr: scan, decoding each object */
    st = stmt(s, ST_MV_SCAN, err);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    strbuf_reset(&s->norm);
    value_normalize(&s->norm, value, strlen(value));
    sqlite3_bind_int64(st, 1, after);
    while (k < max) {
        struct entry *e = NULL;

        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            break;
        }
        if (sqlite3_column_type(st, 1) == SQLITE_NULL ||
            entry_decode(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), &e,
                         NULL) != IDS_OK) {
            continue; /* a corrupt object cannot match; store_mv_get reports it */
        }
        if (entry_has_normalised(e, attr, &s->norm, &s->norm2)) {
            ids[k++] = sqlite3_column_int64(st, 0);
        }
        entry_free(e);
    }
    if (k < max && rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "search metaverse", err);
        k = 0;
    }
    sqlite3_reset(st);
    *n = k;
    return ret;
}

/* ---- reference waits ------------------------------------------------------ */

static enum ids_err sq_ref_wait(struct store *base, int64_t space, const char *key,
                                int64_t referrer, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_REF_ADD, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, space);
    bind_text(st, 2, key);
    sqlite3_bind_int64(st, 3, referrer);
    return run_simple(s, st, "add reference wait", err);
}

static enum ids_err sq_ref_waiters(struct store *base, int64_t space, const char *key, int64_t *ids,
                                   size_t max, size_t *n, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_REF_WAITERS, err);

    *n = 0;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, space);
    bind_text(st, 2, key);
    return collect_ids(s, st, ids, max, n, true, err); /* *n: all of them */
}

static enum ids_err sq_ref_clear(struct store *base, int64_t space, int64_t referrer,
                                 struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_REF_CLEAR, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, space);
    sqlite3_bind_int64(st, 2, referrer);
    return run_simple(s, st, "clear reference waits", err);
}

static enum ids_err sq_ref_waits_prefix(struct store *base, int64_t space, const char *prefix,
                                        struct strvec *keys, int64_t *ids, size_t max, size_t *n,
                                        struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_REF_PREFIX, err);
    size_t len = strlen(prefix);
    char *end;
    enum ids_err ret = IDS_OK;
    int rc;

    *n = 0;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    if (len == 0 || (unsigned char)prefix[len - 1] == 0xff) {
        return ids_error_set(err, IDS_EINVAL, "wait prefix \"%s\" cannot bound a range", prefix);
    }
    end = xstrdup(prefix); /* the first key after every key with the prefix */
    end[len - 1]++;
    sqlite3_bind_int64(st, 1, space);
    bind_text(st, 2, prefix);
    bind_text(st, 3, end);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n < max) {
            strvec_push(keys, (const char *)sqlite3_column_text(st, 0));
            ids[*n] = sqlite3_column_int64(st, 1);
        }
        (*n)++;
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read reference waits", err);
    }
    sqlite3_reset(st);
    free(end);
    return ret;
}

static enum ids_err sq_ref_unwait(struct store *base, int64_t space, const char *key,
                                  int64_t referrer, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_REF_UNWAIT, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, space);
    bind_text(st, 2, key);
    sqlite3_bind_int64(st, 3, referrer);
    return run_simple(s, st, "forget a reference wait", err);
}

/* ---- watermarks and meta -------------------------------------------------- */

/* Run a bound one-column query: the text into *out (replacing it), or
 * IDS_ENOTFOUND leaving *out untouched. */
static enum ids_err get_text(struct sqlite_store *s, sqlite3_stmt *st, const char *what,
                             struct strbuf *out, struct ids_error *err)
{
    int rc;
    enum ids_err ret = IDS_OK;

    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        strbuf_reset(out);
        strbuf_add(out, sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    } else if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "%s: none stored", what);
    } else {
        ret = db_fail(s, rc, what, err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_watermark_get(struct store *base, int64_t connector, struct strbuf *out,
                                     struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_WM_GET, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    return get_text(s, st, "watermark", out, err);
}

static enum ids_err sq_watermark_set(struct store *base, int64_t connector, const char *value,
                                     struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, value ? ST_WM_SET : ST_WM_DEL, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, connector);
    if (value != NULL) {
        bind_text(st, 2, value);
    }
    return run_simple(s, st, "write watermark", err);
}

static enum ids_err sq_meta_get(struct store *base, const char *key, struct strbuf *out,
                                struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_META_GET, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    bind_text(st, 1, key);
    return get_text(s, st, key, out, err);
}

static enum ids_err sq_meta_set(struct store *base, const char *key, const char *value,
                                struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, value ? ST_META_SET : ST_META_DEL, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    bind_text(st, 1, key);
    if (value != NULL) {
        bind_text(st, 2, value);
    }
    return run_simple(s, st, "write meta value", err);
}

/* ---- runs ----------------------------------------------------------------- */

static const char *const status_names[] = {
    [RUN_RUNNING] = "running",
    [RUN_SUCCESS] = "success",
    [RUN_COMPLETED_WITH_ERRORS] = "completed-with-errors",
    [RUN_STOPPED_THRESHOLD] = "stopped-threshold",
    [RUN_STOPPED_ERROR_LIMIT] = "stopped-error-limit",
    [RUN_FAILED] = "failed",
};

static enum run_status status_from_name(const char *name)
{
    size_t i;

    for (i = 0; name != NULL && i < ARRAY_SIZE(status_names); i++) {
        if (strcmp(name, status_names[i]) == 0) {
            return (enum run_status)i;
        }
    }
    return RUN_FAILED; /* unknown text: say it did not succeed */
}

static void counters_to_json(const struct run_counters *c, struct strbuf *out)
{
    size_t i;

    strbuf_reset(out);
    strbuf_addch(out, '{');
    for (i = 0; i < run_counter_count; i++) {
        long v = *run_counter_ptr((struct run_counters *)c, i);

        strbuf_addf(out, "%s\"%s\":%ld", i ? "," : "", run_counter_descs[i].name, v);
    }
    strbuf_addch(out, '}');
}

static void counters_from_json(const char *text, struct run_counters *c)
{
    json_t *root;
    size_t i;

    memset(c, 0, sizeof(*c));
    if (text == NULL) {
        return;
    }
    root = json_loads(text, 0, NULL);
    if (root == NULL) {
        return; /* unreadable counters read as zero; the run itself is intact */
    }
    for (i = 0; i < run_counter_count; i++) {
        json_t *v = json_object_get(root, run_counter_descs[i].name);

        if (json_is_integer(v)) {
            *run_counter_ptr(c, i) = (long)json_integer_value(v);
        }
    }
    json_decref(root);
}

static void run_record_copy(struct run_record *dst, const struct run_record *src)
{
    *dst = *src;
    dst->step = xstrdup_or_null(src->step);
    dst->connector = xstrdup_or_null(src->connector);
    dst->message = xstrdup_or_null(src->message);
}

static void run_error_copy(struct run_error *dst, const struct run_error *src)
{
    *dst = *src;
    dst->connector = xstrdup_or_null(src->connector);
    dst->anchor = xstrdup_or_null(src->anchor);
    dst->dn = xstrdup_or_null(src->dn);
    dst->attr = xstrdup_or_null(src->attr);
    dst->code = xstrdup_or_null(src->code);
    dst->message = xstrdup_or_null(src->message);
}

static const char *status_name_of(enum run_status st)
{
    if ((unsigned)st >= ARRAY_SIZE(status_names)) {
        return "failed";
    }
    return status_names[st];
}

/* id 0: let SQLite assign (the next after the largest). */
static enum ids_err write_run_start(struct sqlite_store *s, const struct run_record *r, int64_t id,
                                    int64_t *out_id, struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_RUN_INSERT, err);
    enum ids_err ret;

    if (st == NULL) {
        return IDS_ESTORE;
    }
    counters_to_json(&r->counters, &s->enc);
    if (id != 0) {
        sqlite3_bind_int64(st, 1, id);
    } else {
        sqlite3_bind_null(st, 1);
    }
    bind_text(st, 2, r->step ? r->step : "");
    bind_text(st, 3, r->connector);
    sqlite3_bind_int64(st, 4, r->parent);
    sqlite3_bind_int64(st, 5, r->start_us);
    sqlite3_bind_int64(st, 6, r->end_us);
    bind_text(st, 7, status_name_of(r->status));
    sqlite3_bind_int(st, 8, r->dry_run);
    bind_text(st, 9, r->message);
    sqlite3_bind_text(st, 10, s->enc.buf, (int)s->enc.len, SQLITE_STATIC);
    ret = run_simple(s, st, "record run", err);
    if (ret == IDS_OK && out_id != NULL) {
        *out_id = sqlite3_last_insert_rowid(s->db);
    }
    return ret;
}

static enum ids_err write_run_finish(struct sqlite_store *s, const struct run_record *r,
                                     struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_RUN_FINISH, err);
    enum ids_err ret;

    if (st == NULL) {
        return IDS_ESTORE;
    }
    counters_to_json(&r->counters, &s->enc);
    sqlite3_bind_int64(st, 1, r->id);
    sqlite3_bind_int64(st, 2, r->end_us ? r->end_us : now_us());
    bind_text(st, 3, status_name_of(r->status));
    bind_text(st, 4, r->message);
    sqlite3_bind_text(st, 5, s->enc.buf, (int)s->enc.len, SQLITE_STATIC);
    ret = run_simple(s, st, "record run end", err);
    if (ret == IDS_OK && sqlite3_changes(s->db) == 0) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "run %" PRId64 ": no such run", r->id);
    }
    return ret;
}

static enum ids_err write_run_error(struct sqlite_store *s, const struct run_error *e,
                                    struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_ERR_INSERT, err);

    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, e->run);
    bind_text(st, 2, e->connector);
    bind_text(st, 3, e->anchor);
    bind_text(st, 4, e->dn);
    bind_text(st, 5, e->attr);
    bind_text(st, 6, e->code ? e->code : "error");
    bind_text(st, 7, e->message);
    sqlite3_bind_int64(st, 8, e->cs_id);
    sqlite3_bind_int64(st, 9, e->mv_id);
    sqlite3_bind_int64(st, 10, e->time_us ? e->time_us : now_us());
    return run_simple(s, st, "record run error", err);
}

/* Run history is never written inside a transaction: a rollback (of a dry
 * run, or of an import stopped by its guard) must not take the record of
 * the run and its errors with it. It is held in memory and written when the
 * transaction ends (after_tx). */
static bool holding_back(const struct sqlite_store *s)
{
    return s->dry_run || s->in_tx || s->in_read;
}

static struct run_op *push_op(struct sqlite_store *s, enum run_op_kind kind)
{
    struct run_op *op;

    ALLOC_GROW(s->ops, s->nops + 1, s->alloc_ops);
    op = &s->ops[s->nops++];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    return op;
}

/* Write the run history held back during a transaction (after it ended).
 * A record that cannot be written is logged and the others still go. */
static void flush_run_ops(struct sqlite_store *s)
{
    struct ids_error err = IDS_ERROR_INIT;
    enum ids_err ret;
    bool own = false;
    size_t i;

    if (s->nops == 0) {
        return;
    }
    ret = auto_begin(s, &own, &err);
    for (i = 0; i < s->nops; i++) {
        struct run_op *op = &s->ops[i];

        if (ret == IDS_OK) {
            enum ids_err r1;

            if (op->kind == RUN_OP_START) {
                r1 = write_run_start(s, &op->rec, op->rec.id, NULL, &err);
            } else if (op->kind == RUN_OP_FINISH) {
                r1 = write_run_finish(s, &op->rec, &err);
            } else {
                r1 = write_run_error(s, &op->err, &err);
            }
            if (r1 != IDS_OK) {
                log_error("store", "msg=\"run history record lost\" error=\"%s\"", err.msg);
            }
        }
        run_record_release(&op->rec);
        run_error_release(&op->err);
    }
    ret = auto_end(s, own, ret, &err);
    if (ret != IDS_OK) {
        log_error("store", "msg=\"run history lost\" error=\"%s\"", err.msg);
    }
    s->nops = 0;
}

static enum ids_err sq_run_start(struct store *base, struct run_record *r, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    int64_t max_id = 0;
    int rc;
    struct run_op *op;

    if (r->start_us == 0) {
        r->start_us = now_us();
    }
    if (!holding_back(s)) {
        return write_run_start(s, r, 0, &r->id, err);
    }
    /* hand out the id now, write the record once the transaction is over */
    st = stmt(s, ST_RUN_MAX, err);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        max_id = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) {
        return db_fail(s, rc, "record run", err);
    }
    if (s->next_run_id <= max_id) {
        s->next_run_id = max_id + 1;
    }
    r->id = s->next_run_id++;
    op = push_op(s, RUN_OP_START);
    run_record_copy(&op->rec, r);
    return IDS_OK;
}

static enum ids_err sq_run_finish(struct store *base, const struct run_record *r,
                                  struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    struct run_op *op;

    if (!holding_back(s)) {
        return write_run_finish(s, r, err);
    }
    op = push_op(s, RUN_OP_FINISH);
    run_record_copy(&op->rec, r);
    if (op->rec.end_us == 0) {
        op->rec.end_us = now_us();
    }
    return IDS_OK;
}

static enum ids_err sq_run_add_error(struct store *base, const struct run_error *e,
                                     struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    struct run_op *op;

    if (!holding_back(s)) {
        return write_run_error(s, e, err);
    }
    op = push_op(s, RUN_OP_ERROR);
    run_error_copy(&op->err, e);
    if (op->err.time_us == 0) {
        op->err.time_us = now_us();
    }
    return IDS_OK;
}

static void row_to_run(sqlite3_stmt *st, struct run_record *r)
{
    char *status;
    const char *counters;

    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(st, 0);
    r->step = col_strdup(st, 1);
    r->connector = col_strdup(st, 2);
    r->parent = sqlite3_column_int64(st, 3);
    r->start_us = sqlite3_column_int64(st, 4);
    r->end_us = sqlite3_column_int64(st, 5);
    status = col_strdup(st, 6);
    r->status = status_from_name(status);
    free(status);
    r->dry_run = sqlite3_column_int(st, 7) != 0;
    r->message = col_strdup(st, 8);
    counters = (const char *)sqlite3_column_text(st, 9);
    counters_from_json(counters, &r->counters);
}

/* The newest held-back record of run `id` (dry run), or NULL. */
static const struct run_record *held_run(struct sqlite_store *s, int64_t id)
{
    size_t i;

    for (i = s->nops; i > 0; i--) {
        const struct run_op *op = &s->ops[i - 1];

        if (op->kind != RUN_OP_ERROR && op->rec.id == id) {
            return &op->rec;
        }
    }
    return NULL;
}

static enum ids_err sq_run_get(struct store *base, int64_t id, struct run_record *out,
                               struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    const struct run_record *held = held_run(s, id);
    sqlite3_stmt *st;
    int rc;
    enum ids_err ret = IDS_OK;

    memset(out, 0, sizeof(*out));
    if (held != NULL) {
        run_record_copy(out, held);
        return IDS_OK;
    }
    st = stmt(s, ST_RUN_GET, err);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row_to_run(st, out);
    } else if (rc == SQLITE_DONE) {
        ret = ids_error_set(err, IDS_ENOTFOUND, "run %" PRId64 ": no such run", id);
    } else {
        ret = db_fail(s, rc, "read run", err);
    }
    sqlite3_reset(st);
    return ret;
}

static enum ids_err sq_runs_list(struct store *base, int64_t before, size_t max,
                                 struct run_record **out, size_t *n, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_RUN_LIST, err);
    struct run_record *v = NULL;
    size_t k = 0;
    size_t alloc = 0;
    int rc;
    enum ids_err ret = IDS_OK;

    *out = NULL;
    *n = 0;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, before > 0 ? before : INT64_MAX);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    for (;;) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            break;
        }
        ALLOC_GROW(v, k + 1, alloc);
        row_to_run(st, &v[k++]);
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "list runs", err);
        while (k > 0) {
            run_record_release(&v[--k]);
        }
        free(v);
        v = NULL;
    }
    sqlite3_reset(st);
    *out = v;
    *n = k;
    return ret;
}

static enum ids_err sq_run_errors(struct store *base, int64_t run, size_t offset, size_t max,
                                  struct run_error **out, size_t *n, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    struct run_error *v = NULL;
    size_t k = 0;
    size_t alloc = 0;
    int rc;
    enum ids_err ret = IDS_OK;

    *out = NULL;
    *n = 0;
    if (run == 0) {
        st = stmt(s, ST_ERR_LAST_RUN, err);
        if (st == NULL) {
            return IDS_ESTORE;
        }
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            run = sqlite3_column_int64(st, 0);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_ROW) {
            return db_fail(s, rc, "list run errors", err);
        }
    }
    st = stmt(s, ST_ERR_LIST, err);
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    sqlite3_bind_int64(st, 3, (int64_t)offset);
    for (;;) {
        struct run_error *e;

        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            break;
        }
        ALLOC_GROW(v, k + 1, alloc);
        e = &v[k++];
        memset(e, 0, sizeof(*e));
        e->run = sqlite3_column_int64(st, 0);
        e->connector = col_strdup(st, 1);
        e->anchor = col_strdup(st, 2);
        e->dn = col_strdup(st, 3);
        e->attr = col_strdup(st, 4);
        e->code = col_strdup(st, 5);
        e->message = col_strdup(st, 6);
        e->cs_id = sqlite3_column_int64(st, 7);
        e->mv_id = sqlite3_column_int64(st, 8);
        e->time_us = sqlite3_column_int64(st, 9);
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "list run errors", err);
        while (k > 0) {
            run_error_release(&v[--k]);
        }
        free(v);
        v = NULL;
    }
    sqlite3_reset(st);
    *out = v;
    *n = k;
    return ret;
}

static enum ids_err sq_run_error_count(struct store *base, int64_t run, long *n,
                                       struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st = stmt(s, ST_ERR_COUNT, err);
    size_t i;
    long held = 0;
    enum ids_err ret;

    *n = 0;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    sqlite3_bind_int64(st, 1, run);
    ret = count_query(s, st, n, err);
    for (i = 0; i < s->nops; i++) {
        if (s->ops[i].kind == RUN_OP_ERROR && s->ops[i].err.run == run) {
            held++;
        }
    }
    *n += held;
    return ret;
}

/* ---- the run lock --------------------------------------------------------- */

/* Start time of process pid in clock ticks since boot (field 22 of
 * /proc/PID/stat), or -1 when unknown. With the pid it tells a live holder
 * from a new process that was given the same pid. */
static long long proc_start_ticks(long pid)
{
    char path[64];
    struct strbuf sb = STRBUF_INIT;
    const char *p;
    long long ticks = -1;
    int field;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    sb.max = 4096;
    if (strbuf_read_file(&sb, path, NULL) != IDS_OK) {
        goto done;
    }
    p = strrchr(sb.buf, ')'); /* the command name may hold spaces and parentheses */
    if (p == NULL) {
        goto done;
    }
    p++;
    /* p is before field 3 (state): skip fields 3..21 */
    for (field = 3; field < 22 && *p != '\0'; field++) {
        while (*p == ' ') {
            p++;
        }
        while (*p != ' ' && *p != '\0') {
            p++;
        }
    }
    if (field == 22) {
        char *end;

        errno = 0;
        ticks = strtoll(p, &end, 10);
        if (errno != 0 || end == p) {
            ticks = -1;
        }
    }
done:
    strbuf_release(&sb);
    return ticks;
}

static void my_host(char *buf, size_t size)
{
    if (gethostname(buf, size) != 0) {
        snprintf(buf, size, "localhost");
    }
    buf[size - 1] = '\0';
}

/* False when the holder is certainly gone: same host, and no process with
 * that pid, or one that started at another time. */
static bool holder_alive(long pid, const char *host, long long start_ticks)
{
    char me[256];
    long long now;

    my_host(me, sizeof(me));
    if (strcmp(host, me) != 0) {
        return true; /* cannot tell for another host */
    }
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        return false;
    }
    if (start_ticks > 0) {
        now = proc_start_ticks(pid);
        if (now >= 0 && now != start_ticks) {
            return false;
        }
    }
    return true;
}

static void format_time_us(int64_t us, char *buf, size_t size)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(buf, size, "%" PRId64 "us", us);
    }
}

/* Read the lock row: IDS_OK when it is free or its holder is gone (*stale
 * then says so, and with `say` a warning is logged), IDS_EBUSY naming a
 * live holder. */
static enum ids_err check_lock(struct sqlite_store *s, bool *stale, bool say, struct ids_error *err)
{
    sqlite3_stmt *st = stmt(s, ST_LOCK_GET, err);
    char *holder = NULL;
    char *host = NULL;
    long pid = 0;
    long long ticks = 0;
    int64_t since_us = 0;
    char since[64];
    int rc;
    enum ids_err ret = IDS_OK;

    *stale = false;
    if (st == NULL) {
        return IDS_ESTORE;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        holder = col_strdup(st, 0);
        pid = (long)sqlite3_column_int64(st, 1);
        host = col_strdup(st, 2);
        ticks = sqlite3_column_int64(st, 3);
        since_us = sqlite3_column_int64(st, 4);
    } else if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc, "read run lock", err);
    }
    sqlite3_reset(st);
    if (ret != IDS_OK || host == NULL) {
        goto done;
    }
    format_time_us(since_us, since, sizeof(since));
    if (holder_alive(pid, host, ticks)) {
        ret = ids_error_set(err, IDS_EBUSY,
                            "store %s is locked by %s (pid %ld on %s since %s): another run is "
                            "in progress; wait for it to finish",
                            s->path, holder ? holder : "idsync", pid, host, since);
        goto done;
    }
    *stale = true;
    if (say) {
        log_warn("store",
                 "msg=\"taking over a stale run lock\" holder=\"%s\" pid=%ld host=%s since=%s",
                 holder ? holder : "", pid, host, since);
    }
done:
    free(holder);
    free(host);
    return ret;
}

static enum ids_err sq_lock_acquire(struct store *base, const char *holder, struct ids_error *err)
{
    struct sqlite_store *s = sq(base);
    sqlite3_stmt *st;
    char host[256];
    bool own = false;
    bool stale;
    enum ids_err ret;

    if (s->lock_held) {
        s->release_pending = false;
        return IDS_OK;
    }
    if (!sqlite3_get_autocommit(s->db)) {
        return ids_error_set(err, IDS_EINTERNAL, "store_lock_acquire: called inside a transaction");
    }
    /* a live holder answers at once, even while its run keeps the store's
     * write lock (which BEGIN IMMEDIATE below would wait 5 s for) */
    ret = check_lock(s, &stale, false, err);
    if (ret != IDS_OK) {
        return ret;
    }
    ret = auto_begin(s, &own, err);
    if (ret != IDS_OK) {
        if (err != NULL && (err->detail & 0xff) == SQLITE_BUSY) {
            ret = ids_error_set(err, IDS_EBUSY,
                                "store %s is busy: another process keeps writing to it", s->path);
        }
        return ret;
    }
    /* again inside the write transaction: nobody can take it in between */
    ret = check_lock(s, &stale, true, err);
    if (ret != IDS_OK) {
        goto done;
    }
    st = stmt(s, ST_LOCK_SET, err);
    if (st == NULL) {
        ret = IDS_ESTORE;
        goto done;
    }
    my_host(host, sizeof(host));
    bind_text(st, 1, holder ? holder : "idsync");
    sqlite3_bind_int64(st, 2, (int64_t)getpid());
    bind_text(st, 3, host);
    sqlite3_bind_int64(st, 4, proc_start_ticks((long)getpid()));
    sqlite3_bind_int64(st, 5, now_us());
    ret = run_simple(s, st, "take run lock", err);
done:
    ret = auto_end(s, own, ret, err);
    if (ret == IDS_OK) {
        s->lock_held = true;
    }
    return ret;
}

static void lock_release_now(struct sqlite_store *s)
{
    struct ids_error err = IDS_ERROR_INIT;
    sqlite3_stmt *st = stmt(s, ST_LOCK_DEL, &err);
    char host[256];

    s->lock_held = false;
    if (st == NULL) {
        log_error("store", "msg=\"cannot release run lock\" error=\"%s\"", err.msg);
        return;
    }
    my_host(host, sizeof(host));
    sqlite3_bind_int64(st, 1, (int64_t)getpid());
    bind_text(st, 2, host);
    if (run_simple(s, st, "release run lock", &err) != IDS_OK) {
        /* the next acquire takes the lock over once this process is gone */
        log_error("store", "msg=\"cannot release run lock\" error=\"%s\"", err.msg);
    }
}

static void sq_lock_release(struct store *base)
{
    struct sqlite_store *s = sq(base);

    if (!s->lock_held) {
        return;
    }
    if (!sqlite3_get_autocommit(s->db)) {
        s->release_pending = true; /* a rollback would undo the release */
        return;
    }
    lock_release_now(s);
}

/* ---- the ops table -------------------------------------------------------- */

const struct store_ops sqlite_store_ops = {
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .dry_run_begin = sq_dry_run_begin,
    .dry_run_end = sq_dry_run_end,
    .connector_id = sq_connector_id,
    .connector_name = sq_connector_name,
    .connector_next = sq_connector_next,
    .ref_waits_prefix = sq_ref_waits_prefix,
    .ref_unwait = sq_ref_unwait,
    .cs_brief_by_dn_other = sq_cs_brief_by_dn_other,
    .connector_find = sq_connector_find,
    .connector_drop = sq_connector_drop,
    .connector_rename = sq_connector_rename,
    .cs_brief = sq_cs_brief,
    .cs_get = sq_cs_get,
    .cs_get_by_anchor = sq_cs_get_by_anchor,
    .cs_get_by_dn = sq_cs_get_by_dn,
    .cs_dn_alias = sq_cs_dn_alias,
    .cs_get_by_former_dn = sq_cs_get_by_former_dn,
    .cs_get_by_mv = sq_cs_get_by_mv,
    .cs_ref_by_mv = sq_cs_ref_by_mv,
    .state_dir = sq_state_dir,
    .cs_put = sq_cs_put,
    .cs_insert_new = sq_cs_insert_new,
    .cs_put_export = sq_cs_put_export,
    .cs_set_export_state = sq_cs_set_export_state,
    .cs_delete = sq_cs_delete,
    .cs_ids = sq_cs_ids,
    .cs_count = sq_cs_count,
    .cs_count_exports = sq_cs_count_exports,
    .runs_prune = sq_runs_prune,
    .cs_find = sq_cs_find,
    .cs_links = sq_cs_links,
    .mv_get = sq_mv_get,
    .mv_put = sq_mv_put,
    .mv_delete = sq_mv_delete,
    .mv_refs = sq_mv_refs,
    .mv_find = sq_mv_find,
    .mv_ids = sq_mv_ids,
    .mv_count = sq_mv_count,
    .mv_search = sq_mv_search,
    .ref_wait = sq_ref_wait,
    .ref_waiters = sq_ref_waiters,
    .ref_clear = sq_ref_clear,
    .watermark_get = sq_watermark_get,
    .watermark_set = sq_watermark_set,
    .meta_get = sq_meta_get,
    .meta_set = sq_meta_set,
    .run_start = sq_run_start,
    .run_finish = sq_run_finish,
    .run_add_error = sq_run_add_error,
    .run_get = sq_run_get,
    .runs_list = sq_runs_list,
    .run_errors = sq_run_errors,
    .run_error_count = sq_run_error_count,
    .lock_acquire = sq_lock_acquire,
    .lock_release = sq_lock_release,
    .cs_put_link = sq_cs_put_link,
    .cs_ident = sq_cs_ident,
    .cs_brief_by_dn = sq_cs_brief_by_dn,
    .read_begin = sq_read_begin,
    .read_end = sq_read_end,
};

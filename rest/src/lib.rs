//! PostgREST-style table API over SQLite.
//!
//! [`router`] serves `GET/HEAD/POST/PATCH/PUT/DELETE /{table}` for the tables in
//! [`RestOptions::allowed_tables`] and `GET /openapi.json`; [`auth_layer`] authenticates requests with JWTs. The
//! daemon serves the router (plain or TLS, with graceful shutdown) beside its other listener.
//!
//! # Query syntax
//! Filters `col=[not.]op.value` with `eq neq gt gte(ge) lt lte(le) like ilike in is isdistinct`, quantified
//! `op(any).{a,b}` / `op(all).{a,b}` for `eq neq gt gte lt lte like ilike`, and full-text search
//! `fts plfts phfts wfts` on FTS5 tables (PostgreSQL text-search syntax mapped onto FTS5 queries); logic trees
//! `or=(a.eq.1,and(b.gt.2,c.lt.3))`, `and=(...)`, `not.or=(...)`; `select=col,alias:col,*` and embedded tables
//! `[alias:]table[!fkcolumn][!inner](...)` (one-to-many and many-to-one along foreign keys, with
//! `table.col=op.value`, `table.order`, `table.limit`, `table.offset` applying to the embedded rows);
//! `order=col.desc.nullslast,...` (NULLs last ascending and first descending unless said otherwise, as in
//! PostgreSQL); `limit`, `offset` and the `Range: 0-24` header (intersected); `on_conflict` and `columns` on
//! POST. `like` is case-sensitive (SQLite GLOB) and `ilike` is ASCII case-insensitive (SQLite LIKE); in both
//! `*` and `%` match any run and `_` one character. How values compare is described in [`values`].
//!
//! `Accept`: `application/json`, `application/vnd.pgrst.object+json` (exactly one row),
//! `application/vnd.pgrst.{array,object}+json;nulls=stripped` (null-valued keys left out) and `text/csv`.
//! `Prefer`: `return=representation|minimal`, `count=exact`, `resolution=merge-duplicates|ignore-duplicates`,
//! `missing=default`, `tx=commit|rollback`, `handling=lenient|strict` and, with `handling=strict`,
//! `max-affected=N`; applied ones are echoed in `Preference-Applied`.
//!
//! # Errors
//! Bodies are `{"code", "message", "details", "hint"}`:
//!
//! | status | code | when |
//! |---|---|---|
//! | 300 | PGRST201 | embedded table related in more than one way (name the foreign-key column: `table!col(...)`) |
//! | 400 | PGRST100 | malformed query term (named in the message); full-text search on a table that is not FTS5 |
//! | 400 | 42703 | unknown column in `select`, a filter, `order` or `on_conflict` (table and column named) |
//! | 400 | PGRST204 | unknown column as a body key or in `columns=` |
//! | 400 | PGRST102 | invalid body: not JSON, bulk rows with different keys, a value that does not fit the column's declared type, generated column written |
//! | 400 | PGRST105 | invalid PUT (filters must be `eq` on exactly the primary key; body must be the whole row) |
//! | 400 | PGRST122 | unknown preference with `Prefer: handling=strict` |
//! | 400 | PGRST124 | a write affecting more rows than `Prefer: max-affected` (rolled back) |
//! | 400 | PGRST200 | embedded table not related by a foreign key (or not served) |
//! | 400 | 23502 23514 | NOT NULL or CHECK constraint violated |
//! | 400 | LC001 | PATCH/DELETE without filter while `allow_unfiltered_writes` is false |
//! | 400 | LC009 | SQLite refused the statement: `on_conflict` matching no unique index, write to a plain view, ... |
//! | 401 | PGRST301 | missing, malformed, expired, not-yet-valid, wrongly signed token; wrong `aud`/`iss`; `alg` not allowed |
//! | 403 | 42501 | token without a usable role; table (or embedded table) outside the role's list; write by a read-only role |
//! | 404 | PGRST205 | table not served (whether or not it exists) or unknown route |
//! | 406 | PGRST107 / PGRST116 | `Accept` not satisfiable / single object requested but not exactly one row |
//! | 409 | 23505 23503 23000 | constraint violation: unique/primary key, foreign key, other |
//! | 413 | LC002 | body larger than `max_body_bytes` |
//! | 415 | LC003 | body not JSON |
//! | 416 | PGRST103 | with `Prefer: count=exact`, an offset beyond the total (`Content-Range: */N`); without a count a window past the end is `200 []` |
//! | 500 | LC006 LC007 LC008 | unexpected SQLite error, configuration, internal |
//! | 503 | LC004 / LC005 | database locked beyond `busy_timeout` / database cannot be opened (with `Retry-After`) |
//! | 504 | 57014 | the request exceeded `request_timeout` and its statement was interrupted |
//!
//! A timed-out query answers 504 rather than 503: the server is up, the request was too expensive, and
//! retrying the same request will not help.
//!
//! # Concurrency
//! Reads run on a pool of `read_connections` read-only connections, writes on one writer connection (with
//! `foreign_keys` on), each request in one transaction on a thread that owns the connection, never on the async
//! executor. Connections are opened on first use and the database file is never created, so the API can start
//! before the application; until the file exists requests answer 503. Verified tokens are remembered (by their
//! exact text, at most a few thousand) so that a client's repeated token is not verified again; its `exp` and
//! `nbf` are still checked on every request.

mod auth;
mod db;
mod embed;
mod error;
mod handlers;
mod headers;
mod metrics;
mod openapi;
mod ops;
mod options;
mod query;
mod render;
mod routes;
mod sql;
mod state;
pub mod sync;
pub mod values;

pub use auth::{
    AuthConfig, AuthContext, AuthLayer, AuthService, JwtOptions, KeySource, RolePolicy, auth_layer, check_auth_allowed,
};
pub use error::RestError;
pub use metrics::RestMetrics;
pub use options::RestOptions;
pub use query::parse_pairs;
pub use routes::router;
pub use state::RestState;

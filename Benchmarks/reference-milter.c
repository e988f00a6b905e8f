/*
 * reference-milter: the C baseline of scripts/bench-milter. A plain libmilter milter with the
 * policy Benchmarks/bench.rules gives splitmilter, written as a C milter author would write it
 * for speed, so that splitmilter is measured against a fair bar, not a strawman:
 *
 *   - configuration is read once at start into read-only open-addressing hash tables (no lock is
 *     ever taken after smfi_main starts);
 *   - each connection has its own state (smfi_setpriv) with an arena that keeps the recipients of
 *     the message being received, reset per message, so the steady state allocates nothing;
 *   - every callback is O(length of its arguments); end of message is O(recipients).
 *
 * Policy, for recipients of DOMAIN (case-insensitive):
 *   - a user in the rewrite map (-r FILE, lines "name target") is replaced: smfi_delrcpt of the
 *     recipient as received, then smfi_addrcpt_par(target, "[NOTIFY=…] ORCPT=…"), keeping the
 *     client's NOTIFY and ORCPT when well formed, else ORCPT=rfc822;<recipient>;
 *   - a user in the except list (-x FILE, one name per line) gets no copy;
 *   - every other user gets a copy at LOCAL@COPYDOMAIN (-c) with "NOTIFY=NEVER ORCPT=rfc822;<recipient>",
 *     and the message gets the header X-Splitmilter-Copied: INSTANCE (-i);
 *   - a message that already carries that header with this instance gets no copies.
 * Users are looked up case-insensitively by the whole local part, then by the part before the first
 * "+" (the extension). Local parts outside letters, digits and ". _ - + =" (quoted, routed, too long,
 * doubled or edge dots) get nothing. Deletes come before adds; nothing is added that is already a
 * recipient or was already added (compared case-insensitively); each recipient is deleted once.
 * That is splitmilter's decision and plan semantics (Sources/SplitCore) for the same rules.
 *
 * Negotiation matches splitmilter's (Sources/SplitDaemon/Callbacks.swift): HELO, body, end of
 * headers and unknown commands are not sent; with -n, connect, MAIL, RCPT and headers are not
 * answered and DATA is not sent.
 *
 * Usage: reference-milter -p SOCKET -d DOMAIN -c COPYDOMAIN -i INSTANCE [-r MAP] [-x LIST] [-n]
 */

#define SM_CONF_STDBOOL_H 1
#include <ctype.h>
#include <errno.h>
#include <libmilter/mfapi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MARKER_HEADER "X-Splitmilter-Copied"
#define MAX_ADDRESS 512    /* longer RCPT arguments are not looked at (splitmilter's bound) */
#define MAX_LOCAL 64       /* RFC 5321 */
#define MAX_DOMAIN 255     /* RFC 5321 */
#define MAX_RECIPIENTS 10000 /* then 452, as splitmilter */
#define NONE UINT32_MAX

/* ---- configuration: read at start, read-only afterwards ---- */

/* An open-addressing hash table of lower-case names, each with an optional value. */
struct table {
    struct entry {
        char *name;
        size_t length;
        uint64_t hash;
        const char *value;          /* rewrite target as written, domain lower-cased */
        const char *value_identity; /* the target lower-cased, for duplicate checks */
    } *slots;
    size_t mask; /* capacity - 1; capacity is a power of two, at least twice the count */
    size_t count;
};

static struct {
    const char *domain;      /* lower case */
    const char *copy_domain; /* lower case */
    const char *instance;
    bool no_reply;
    struct table rewrites;
    struct table excepted;
} config;

static uint64_t hash_bytes(const char *bytes, size_t length) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < length; i++) h = (h ^ (unsigned char)bytes[i]) * 1099511628211ULL;
    return h;
}

static void *xmalloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "reference-milter: out of memory\n");
        exit(1);
    }
    return p;
}

static void table_init(struct table *t, size_t expected) {
    size_t capacity = 16;
    while (capacity < expected * 2) capacity *= 2;
    t->slots = calloc(capacity, sizeof *t->slots);
    if (t->slots == NULL) {
        fprintf(stderr, "reference-milter: out of memory\n");
        exit(1);
    }
    t->mask = capacity - 1;
    t->count = 0;
}

static const struct entry *table_find(const struct table *t, const char *name, size_t length, uint64_t hash) {
    if (t->count == 0) return NULL;
    for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        const struct entry *e = &t->slots[i];
        if (e->name == NULL) return NULL;
        if (e->hash == hash && e->length == length && memcmp(e->name, name, length) == 0) return e;
    }
}

/* Adds a lower-case name; a repeated name keeps its first value. */
static void table_add(struct table *t, char *name, const char *value, const char *value_identity) {
    size_t length = strlen(name);
    uint64_t hash = hash_bytes(name, length);
    if (table_find(t, name, length, hash) != NULL) return;
    for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        struct entry *e = &t->slots[i];
        if (e->name != NULL) continue;
        *e = (struct entry){name, length, hash, value, value_identity};
        t->count++;
        return;
    }
}

static char *lower_copy(const char *text, size_t length) {
    char *out = xmalloc(length + 1);
    for (size_t i = 0; i < length; i++) out[i] = (char)tolower((unsigned char)text[i]);
    out[length] = '\0';
    return out;
}

/* Reads FILE's lines into t: "name" or, with values, "name target". Blank lines and #comments skip. */
static void load_table(struct table *t, const char *path, bool with_values) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "reference-milter: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    size_t lines = 0;
    int c;
    while ((c = getc(f)) != EOF) lines += c == '\n';
    rewind(f);
    table_init(t, lines + 1);
    char *line = NULL;
    size_t size = 0;
    unsigned number = 0;
    while (getline(&line, &size, f) != -1) {
        number++;
        char *hash = strchr(line, '#');
        if (hash != NULL) *hash = '\0';
        char *name = strtok(line, " \t\r\n");
        if (name == NULL) continue;
        char *target = strtok(NULL, " \t\r\n");
        if (with_values != (target != NULL) || strtok(NULL, " \t\r\n") != NULL) {
            fprintf(stderr, "reference-milter: %s:%u: expected %s\n", path, number, with_values ? "NAME TARGET" : "NAME");
            exit(1);
        }
        char *value = NULL, *identity = NULL;
        if (target != NULL) {
            size_t length = strlen(target);
            value = xmalloc(length + 1);
            memcpy(value, target, length + 1);
            char *at = strrchr(value, '@');
            for (char *p = at ? at : value + length; *p; p++) *p = (char)tolower((unsigned char)*p);
            identity = lower_copy(value, length);
        }
        table_add(t, lower_copy(name, strlen(name)), value, identity);
    }
    free(line);
    fclose(f);
}

/* ---- addresses and ESMTP parameters (splitmilter's rules for what may go into a target) ---- */

static bool local_char_allowed(unsigned char c) {
    return isalnum(c) || c == '.' || c == '_' || c == '-' || c == '+' || c == '=';
}

static bool local_part_ok(const char *p, size_t n) {
    if (n == 0 || n > MAX_LOCAL || p[0] == '.' || p[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        if (!local_char_allowed((unsigned char)p[i])) return false;
        if (p[i] == '.' && i > 0 && p[i - 1] == '.') return false;
    }
    return true;
}

static bool domain_ok(const char *p, size_t n) {
    if (n == 0 || n > MAX_DOMAIN) return false;
    size_t label = 0;
    char previous = '.';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '.') {
            if (label == 0 || previous == '-') return false;
            label = 0;
        } else if (isalnum(c) || c == '_' || (c == '-' && label > 0)) {
            if (++label > 63) return false;
        } else {
            return false;
        }
        previous = (char)c;
    }
    return label > 0 && previous != '-';
}

/* A RCPT argument split into local part and domain; ok is false when it cannot be used. */
struct address {
    bool ok;
    const char *local, *domain;
    size_t local_length, domain_length;
};

static struct address parse_address(const char *raw) {
    struct address a = {0};
    size_t n = strlen(raw);
    if (n > MAX_ADDRESS) return a;
    const char *p = raw, *end = raw + n;
    while (p < end && *p == ' ') p++;
    while (end > p && end[-1] == ' ') end--;
    if (p < end && *p == '<') {
        if (end - p < 2 || end[-1] != '>') return a;
        p++, end--;
    }
    if (p == end || *p == '@') return a;
    const char *at = NULL;
    for (const char *q = p; q < end; q++) {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>') return a;
        if (c == '@') at = q;
    }
    if (at == NULL) { /* a bare local user: no domain, so no section */
        a.ok = local_part_ok(p, (size_t)(end - p));
        a.local = p, a.local_length = (size_t)(end - p);
        a.domain = end, a.domain_length = 0;
        return a;
    }
    a.local = p, a.local_length = (size_t)(at - p);
    a.domain = at + 1, a.domain_length = (size_t)(end - at - 1);
    if (a.domain_length > 0 && a.domain[0] == '[') return a;
    if (a.domain_length > 0 && a.domain[a.domain_length - 1] == '.') a.domain_length--;
    a.ok = domain_ok(a.domain, a.domain_length) && local_part_ok(a.local, a.local_length);
    return a;
}

/* RFC 3461 xtext of text, into out (at least 3 * length + 1 bytes). */
static size_t xtext(char *out, const char *text, size_t length) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x21 && c <= 0x7e && c != '+' && c != '=') {
            out[o++] = (char)c;
        } else {
            out[o++] = '+', out[o++] = hex[c >> 4], out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

/* NOTIFY=NEVER, or a list of SUCCESS, FAILURE, DELAY without repeats; upper-cased into out. */
static bool valid_notify(const char *value, char *out, size_t size) {
    size_t n = strlen(value);
    if (n + 1 > size) return false;
    for (size_t i = 0; i <= n; i++) out[i] = (char)toupper((unsigned char)value[i]);
    if (strcmp(out, "NEVER") == 0) return true;
    unsigned seen = 0;
    for (const char *item = out;;) {
        const char *comma = strchr(item, ',');
        size_t length = comma ? (size_t)(comma - item) : strlen(item);
        unsigned bit = length == 7 && memcmp(item, "SUCCESS", 7) == 0   ? 1
                       : length == 7 && memcmp(item, "FAILURE", 7) == 0 ? 2
                       : length == 5 && memcmp(item, "DELAY", 5) == 0   ? 4
                                                                         : 0;
        if (bit == 0 || (seen & bit)) return false;
        seen |= bit;
        if (comma == NULL) return true;
        item = comma + 1;
    }
}

/* ORCPT=type;xtext, at most 500 bytes, with an atom type and well-formed xtext. */
static bool valid_orcpt(const char *value) {
    size_t n = strlen(value);
    const char *semicolon = strchr(value, ';');
    if (n > 500 || semicolon == NULL || semicolon == value || semicolon[1] == '\0') return false;
    for (const char *p = value; p < semicolon; p++)
        if (!local_char_allowed((unsigned char)*p) || *p == '=') return false;
    for (const char *p = semicolon + 1; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '+') {
            for (int k = 1; k <= 2; k++)
                if (!isdigit((unsigned char)p[k]) && !(p[k] >= 'A' && p[k] <= 'F')) return false;
            p += 2;
        } else if (c < 0x21 || c > 0x7e || c == '=') {
            return false;
        }
    }
    return true;
}

/* ---- per-connection state ---- */

/* One accepted recipient of the current message. Strings are offsets into the connection's arena. */
struct recipient {
    uint32_t raw;      /* argv[0] exactly as received: smfi_delrcpt must match it */
    uint32_t identity; /* the address lower-cased, for duplicate checks */
    uint32_t original; /* local@domain as received (domain lower-cased), for ORCPT */
    uint32_t copy;     /* copy target, or NONE */
    uint32_t copy_identity;
    uint32_t notify;             /* the client's NOTIFY (upper case) if well formed, or NONE */
    uint32_t orcpt;              /* the client's ORCPT if well formed, or NONE */
    const struct entry *rewrite; /* the rewrite map entry, or NULL */
};

struct connection {
    unsigned long silent; /* the SMFIP_NR_* steps negotiated on this connection */
    bool marked;          /* the message carries this instance's marker */
    bool overflow;        /* more than MAX_RECIPIENTS recipients */
    char *arena;          /* the message's strings; reset per message, grown and kept */
    uint32_t used, arena_size;
    struct recipient *recipients;
    uint32_t count, capacity;
    const char **set; /* duplicate checks at end of message: open addressing, NULL is empty */
    size_t set_capacity, set_mask;
};

static struct connection *connection(SMFICTX *ctx) {
    struct connection *c = smfi_getpriv(ctx);
    if (c == NULL) {
        c = calloc(1, sizeof *c);
        if (c == NULL || smfi_setpriv(ctx, c) != MI_SUCCESS) {
            free(c);
            return NULL;
        }
    }
    return c;
}

static void reset(struct connection *c) {
    c->marked = false;
    c->overflow = false;
    c->used = 0;
    c->count = 0;
}

/* Copies length bytes (and a NUL) into the arena; NONE when the arena cannot grow. */
static uint32_t keep(struct connection *c, const char *bytes, size_t length) {
    if ((size_t)c->used + length + 1 > c->arena_size) {
        size_t size = c->arena_size ? c->arena_size : 4096;
        while (size < (size_t)c->used + length + 1) size *= 2;
        if (size > UINT32_MAX / 2) return NONE;
        char *grown = realloc(c->arena, size);
        if (grown == NULL) return NONE;
        c->arena = grown, c->arena_size = (uint32_t)size;
    }
    uint32_t at = c->used;
    memcpy(c->arena + at, bytes, length);
    c->arena[at + length] = '\0';
    c->used += (uint32_t)length + 1;
    return at;
}

static uint32_t keep_lower(struct connection *c, const char *bytes, size_t length) {
    uint32_t at = keep(c, bytes, length);
    if (at != NONE)
        for (size_t i = 0; i < length; i++) c->arena[at + i] = (char)tolower((unsigned char)c->arena[at + i]);
    return at;
}

/* Empties the duplicate-check set, with room for n strings. */
static bool set_clear(struct connection *c, size_t n) {
    size_t size = 16;
    while (size < n * 2) size *= 2;
    if (size > c->set_capacity) {
        const char **grown = realloc(c->set, size * sizeof *grown);
        if (grown == NULL) return false;
        c->set = grown, c->set_capacity = size;
    }
    memset(c->set, 0, size * sizeof *c->set);
    c->set_mask = size - 1;
    return true;
}

/* Inserts s; false when an equal string is already there. */
static bool set_insert(struct connection *c, const char *s) {
    for (size_t i = hash_bytes(s, strlen(s)) & c->set_mask;; i = (i + 1) & c->set_mask) {
        if (c->set[i] == NULL) {
            c->set[i] = s;
            return true;
        }
        if (strcmp(c->set[i], s) == 0) return false;
    }
}

/* ---- callbacks ---- */

/* SMFIS_NOREPLY for a step negotiated as not answered, else status. */
static sfsistat answer(const struct connection *c, unsigned long step, sfsistat status) {
    return c != NULL && (c->silent & step) ? SMFIS_NOREPLY : status;
}

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long actions, unsigned long steps, unsigned long unused2,
                             unsigned long unused3, unsigned long *want_actions, unsigned long *want_steps,
                             unsigned long *unused_p2, unsigned long *unused_p3) {
    (void)unused2, (void)unused3;
    struct connection *c = connection(ctx);
    unsigned long needed = SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_ADDHDRS;
    if (c == NULL || (actions & needed) != needed) return SMFIS_REJECT;
    unsigned long skipped = SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN;
    unsigned long silent = 0;
    if (config.no_reply) {
        silent = SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_HDR; /* RCPT answered, as splitmilter does */
        skipped |= SMFIP_NODATA;
    }
    c->silent = silent & steps;
    *want_actions = needed;
    *want_steps = (skipped & steps) | c->silent;
    *unused_p2 = 0;
    *unused_p3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *address) {
    (void)host, (void)address;
    return answer(connection(ctx), SMFIP_NR_CONN, SMFIS_CONTINUE);
}

static sfsistat on_mail(SMFICTX *ctx, char **argv) {
    (void)argv;
    struct connection *c = connection(ctx);
    if (c != NULL) reset(c);
    return answer(c, SMFIP_NR_MAIL, SMFIS_CONTINUE);
}

/* Reads the client's NOTIFY and ORCPT (argv[1…]) for a rewrite to keep; the last well-formed one wins. */
static void keep_parameters(struct connection *c, struct recipient *r, char **argv) {
    for (int i = 1; i < 64 && argv[i] != NULL; i++) {
        const char *equals = strchr(argv[i], '=');
        if (equals == NULL || strlen(argv[i]) > 1024) continue;
        size_t key_length = (size_t)(equals - argv[i]);
        char upper[32];
        if (key_length == 6 && strncasecmp(argv[i], "NOTIFY", 6) == 0) {
            if (valid_notify(equals + 1, upper, sizeof upper)) r->notify = keep(c, upper, strlen(upper));
        } else if (key_length == 5 && strncasecmp(argv[i], "ORCPT", 5) == 0 && valid_orcpt(equals + 1)) {
            r->orcpt = keep(c, equals + 1, strlen(equals + 1));
        }
    }
}

/* Decides one recipient of config.domain: its rewrite (map lookup) and copy (unless excepted). */
static void decide(struct connection *c, struct recipient *r, const struct address *a, char **argv) {
    char key[MAX_LOCAL];
    size_t full = a->local_length;
    for (size_t i = 0; i < full; i++) key[i] = (char)tolower((unsigned char)a->local[i]);
    const char *plus = memchr(key, '+', full);
    size_t base = plus != NULL && plus != key ? (size_t)(plus - key) : full; /* without the extension */
    uint64_t full_hash = hash_bytes(key, full), base_hash = base != full ? hash_bytes(key, base) : 0;
    r->rewrite = table_find(&config.rewrites, key, full, full_hash);
    if (r->rewrite == NULL && base != full) r->rewrite = table_find(&config.rewrites, key, base, base_hash);
    if (r->rewrite != NULL && strcmp(r->rewrite->value_identity, c->arena + r->identity) == 0)
        r->rewrite = NULL; /* rewriting to itself changes nothing */
    if (r->rewrite != NULL) keep_parameters(c, r, argv);
    bool excepted = table_find(&config.excepted, key, full, full_hash) != NULL ||
                    (base != full && table_find(&config.excepted, key, base, base_hash) != NULL);
    if (excepted) return;
    char target[MAX_LOCAL + 1 + MAX_DOMAIN + 1];
    memcpy(target, a->local, full);
    target[full] = '@';
    size_t domain = strlen(config.copy_domain);
    memcpy(target + full + 1, config.copy_domain, domain);
    r->copy_identity = keep_lower(c, target, full + 1 + domain);
    if (r->copy_identity != NONE && strcmp(c->arena + r->copy_identity, c->arena + r->identity) != 0)
        r->copy = keep(c, target, full + 1 + domain); /* never a copy to the recipient itself */
}

static sfsistat on_rcpt(SMFICTX *ctx, char **argv) {
    struct connection *c = connection(ctx);
    if (c == NULL || argv == NULL || argv[0] == NULL) return answer(c, SMFIP_NR_RCPT, SMFIS_CONTINUE);
    if (c->count >= MAX_RECIPIENTS || c->overflow) {
        c->overflow = true; /* answered here when RCPT is answered, else at end of message */
        smfi_setreply(ctx, "452", "4.5.3", "Too many recipients for reference-milter");
        return answer(c, SMFIP_NR_RCPT, SMFIS_TEMPFAIL);
    }
    if (c->count == c->capacity) {
        uint32_t capacity = c->capacity ? c->capacity * 2 : 16;
        struct recipient *grown = realloc(c->recipients, capacity * sizeof *grown);
        if (grown == NULL) {
            c->overflow = true;
            return answer(c, SMFIP_NR_RCPT, SMFIS_TEMPFAIL);
        }
        c->recipients = grown, c->capacity = capacity;
    }
    const char *raw = argv[0];
    struct recipient r = {.original = NONE, .copy = NONE, .copy_identity = NONE, .notify = NONE, .orcpt = NONE};
    r.raw = keep(c, raw, strlen(raw));
    struct address a = parse_address(raw);
    if (a.ok) {
        char buffer[MAX_ADDRESS + 1];
        size_t n = a.local_length;
        memcpy(buffer, a.local, n);
        if (a.domain_length > 0) {
            buffer[n++] = '@';
            for (size_t i = 0; i < a.domain_length; i++) buffer[n++] = (char)tolower((unsigned char)a.domain[i]);
        }
        r.original = keep(c, buffer, n);
        r.identity = keep_lower(c, buffer, n);
    } else { /* as received, without blanks and one pair of angle brackets */
        const char *p = raw, *end = raw + strlen(raw);
        while (p < end && *p == ' ') p++;
        while (end > p && end[-1] == ' ') end--;
        if (end - p >= 2 && *p == '<' && end[-1] == '>') p++, end--;
        r.identity = keep_lower(c, p, (size_t)(end - p));
    }
    if (r.raw == NONE || r.identity == NONE) {
        c->overflow = true;
        return answer(c, SMFIP_NR_RCPT, SMFIS_TEMPFAIL);
    }
    size_t domain = strlen(config.domain);
    if (a.ok && a.domain_length == domain && strncasecmp(a.domain, config.domain, domain) == 0) decide(c, &r, &a, argv);
    c->recipients[c->count++] = r;
    return answer(c, SMFIP_NR_RCPT, SMFIS_CONTINUE);
}

static sfsistat on_data(SMFICTX *ctx) {
    (void)ctx;
    return SMFIS_CONTINUE;
}

static bool is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

static sfsistat on_header(SMFICTX *ctx, char *name, char *value) {
    struct connection *c = smfi_getpriv(ctx);
    if (c != NULL && !c->marked && name != NULL && value != NULL && strcasecmp(name, MARKER_HEADER) == 0) {
        const char *start = value, *end = value + strlen(value);
        while (start < end && is_blank(*start)) start++;
        while (end > start && is_blank(end[-1])) end--;
        size_t n = strlen(config.instance);
        c->marked = (size_t)(end - start) == n && memcmp(start, config.instance, n) == 0;
    }
    return answer(c, SMFIP_NR_HDR, SMFIS_CONTINUE);
}

/* The edits, in splitmilter's order: deletes, then rewrite targets, then copies, then the marker. */
static bool edit(SMFICTX *ctx, struct connection *c) {
    const char *pool = c->arena; /* nothing is kept from here on, so the arena stays put */
    bool rewrites = false;
    for (uint32_t i = 0; i < c->count; i++) rewrites |= c->recipients[i].rewrite != NULL;
    if (rewrites) { /* each rewritten recipient is deleted once */
        if (!set_clear(c, c->count)) return false;
        for (uint32_t i = 0; i < c->count; i++) {
            const struct recipient *r = &c->recipients[i];
            if (r->rewrite != NULL && set_insert(c, pool + r->raw) &&
                smfi_delrcpt(ctx, (char *)pool + r->raw) != MI_SUCCESS)
                return false;
        }
    }
    /* Present: the recipients that stay, then every address added; nothing is added twice. */
    if (!set_clear(c, (size_t)c->count * 3)) return false;
    for (uint32_t i = 0; i < c->count; i++)
        if (c->recipients[i].rewrite == NULL) set_insert(c, pool + c->recipients[i].identity);
    char parameters[64 + 500 + 3 * MAX_ADDRESS];
    for (uint32_t i = 0; rewrites && i < c->count; i++) {
        const struct recipient *r = &c->recipients[i];
        if (r->rewrite == NULL || !set_insert(c, r->rewrite->value_identity)) continue;
        size_t n = 0;
        if (r->notify != NONE) n = (size_t)snprintf(parameters, sizeof parameters, "NOTIFY=%s ", pool + r->notify);
        if (r->orcpt != NONE) {
            snprintf(parameters + n, sizeof parameters - n, "ORCPT=%s", pool + r->orcpt);
        } else {
            memcpy(parameters + n, "ORCPT=rfc822;", 13);
            xtext(parameters + n + 13, pool + r->original, strlen(pool + r->original));
        }
        if (smfi_addrcpt_par(ctx, (char *)r->rewrite->value, parameters) != MI_SUCCESS) return false;
    }
    unsigned copies = 0;
    for (uint32_t i = 0; !c->marked && i < c->count; i++) {
        const struct recipient *r = &c->recipients[i];
        if (r->copy == NONE || !set_insert(c, pool + r->copy_identity)) continue;
        memcpy(parameters, "NOTIFY=NEVER ORCPT=rfc822;", 26);
        xtext(parameters + 26, pool + r->original, strlen(pool + r->original));
        if (smfi_addrcpt_par(ctx, (char *)pool + r->copy, parameters) != MI_SUCCESS) return false;
        copies++;
    }
    return copies == 0 || smfi_addheader(ctx, MARKER_HEADER, (char *)config.instance) == MI_SUCCESS;
}

static sfsistat on_eom(SMFICTX *ctx) {
    struct connection *c = smfi_getpriv(ctx);
    if (c == NULL) return SMFIS_CONTINUE;
    sfsistat status = SMFIS_CONTINUE;
    if (c->overflow || !edit(ctx, c)) {
        smfi_setreply(ctx, "451", "4.3.0", "reference-milter: temporary failure at end of message");
        status = SMFIS_TEMPFAIL;
    }
    reset(c);
    return status;
}

static sfsistat on_abort(SMFICTX *ctx) {
    struct connection *c = smfi_getpriv(ctx);
    if (c != NULL) reset(c);
    return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx) {
    struct connection *c = smfi_getpriv(ctx);
    if (c != NULL) {
        free(c->arena);
        free(c->recipients);
        free(c->set);
        free(c);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

static void usage(void) {
    fprintf(stderr, "usage: reference-milter -p SOCKET -d DOMAIN -c COPYDOMAIN -i INSTANCE [-r MAP] [-x LIST] [-n]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *socket = NULL, *rewrite_map = NULL, *except_list = NULL;
    int option;
    while ((option = getopt(argc, argv, "p:d:c:i:r:x:n")) != -1) {
        switch (option) {
        case 'p': socket = optarg; break;
        case 'd': config.domain = lower_copy(optarg, strlen(optarg)); break;
        case 'c': config.copy_domain = lower_copy(optarg, strlen(optarg)); break;
        case 'i': config.instance = optarg; break;
        case 'r': rewrite_map = optarg; break;
        case 'x': except_list = optarg; break;
        case 'n': config.no_reply = true; break;
        default: usage();
        }
    }
    if (socket == NULL || config.domain == NULL || config.copy_domain == NULL || config.instance == NULL ||
        optind != argc)
        usage();
    if (rewrite_map) load_table(&config.rewrites, rewrite_map, true);
    if (except_list) load_table(&config.excepted, except_list, false);

    struct smfiDesc description = {
        .xxfi_name = "reference-milter",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT | SMFIF_ADDHDRS,
        .xxfi_connect = on_connect,
        .xxfi_envfrom = on_mail,
        .xxfi_envrcpt = on_rcpt,
        .xxfi_header = on_header,
        .xxfi_eom = on_eom,
        .xxfi_abort = on_abort,
        .xxfi_close = on_close,
        .xxfi_data = on_data,
        .xxfi_negotiate = on_negotiate,
    };
    if (smfi_setconn((char *)socket) != MI_SUCCESS || smfi_register(description) != MI_SUCCESS ||
        smfi_opensocket(true) != MI_SUCCESS) {
        fprintf(stderr, "reference-milter: cannot listen on %s\n", socket);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}

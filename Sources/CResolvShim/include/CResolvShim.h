/// CResolvShim: the system's DNS resolver (glibc libresolv) for SPF lookups.
///
/// Swift can call res_nquery itself, but not the ns_* accessor macros that read an answer, and it
/// cannot fill in `struct __res_state`'s server list portably. These wrappers do only that: ask one
/// question (of the system's resolvers, or of one given server) and hand back each answer record's
/// type and data. Record data is parsed in Swift (SplitSystem/ResolverDNS.swift).
#ifndef CRESOLVSHIM_H
#define CRESOLVSHIM_H

/// The outcome of one query.
enum {
    CRESOLV_ANSWER = 0,   // records follow (possibly none of the asked type)
    CRESOLV_NO_DATA = 1,  // NXDOMAIN or no record of that type: an answer, not a failure
    CRESOLV_FAILURE = 2,  // SERVFAIL, timeout, refused: try again later
};

/// Asks `name` `type` (1 A, 15 MX, 16 TXT, 28 AAAA) in class IN. `server` is an IPv4 address or
/// NULL for /etc/resolv.conf's servers; `port` 0 means 53. On CRESOLV_ANSWER, `*length` is the size
/// of the message in `answer`.
int cresolv_query(const char *server, int port, const char *name, int type, unsigned char *answer, int size,
                  int *length);

/// The number of records in the answer section, or -1 if the message does not parse.
int cresolv_answer_count(const unsigned char *message, int length);

/// Record `index` of the answer section: its type and data (pointing into `message`). 0 or -1.
int cresolv_answer_record(const unsigned char *message, int length, int index, int *type,
                          const unsigned char **data, int *dataLength);

/// Expands the (possibly compressed) domain name at `source` inside `message` into `name`. 0 or -1.
int cresolv_expand_name(const unsigned char *message, int length, const unsigned char *source, char *name,
                        int size);

#endif

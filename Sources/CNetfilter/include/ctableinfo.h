#ifndef CTABLEINFO_H
#define CTABLEINFO_H
/*
 * How much a legacy x_tables table holds, from IPT_SO_GET_INFO / IP6T_SO_GET_INFO alone: no copy of the entries
 * (reading a 10k-Service nat table costs ~0.35 s of kernel time; this costs microseconds). Only ask for tables the
 * kernel already lists in /proc/net/ip{,6}_tables_names: naming another one would instantiate it.
 */

/* Entries beyond an empty table's (one policy per built-in chain, and the final ERROR entry): each rule counts
 * one, each user chain two. Returns that number, or -errno (e.g. -ENOENT when the table does not exist). */
long knat_table_extra_entries(int family, const char *table);

#endif

#ifndef CBENCHFLOOR_H
#define CBENCHFLOOR_H
/*
 * The bare libiptc floor for `natd-bench floor`: what one IPv4 table commit costs when nothing but
 * libiptc does the work. iptc_init of the loaded table, flush and refill of one small chain with its
 * own rules (the smallest change that still makes iptc_commit rewrite the whole table), iptc_commit.
 */

/* One init + change + commit round of the IPv4 table `table`, refilling `chain`. Returns 0 or an
 * errno value with a message in `message`. The seconds spent are written to the out parameters. */
int knat_floor_round(const char *table, const char *chain, double *init_seconds, double *commit_seconds,
                     unsigned *rules_refilled, char *message, unsigned long message_capacity);

#endif

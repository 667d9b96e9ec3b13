#ifndef CNETFILTER_H
#define CNETFILTER_H
/* Filled in by the libiptc backend work. */
int knat_shim_version(void);
#endif

#include "cnetfilter.h"
int knat_shim_version(void) { return 1; }

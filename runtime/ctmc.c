/* ctmc.c */
#include "ctmc.h"

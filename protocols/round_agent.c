/* round_agent.c - see fv_round.h (being written). */
#include "fv_round.h"

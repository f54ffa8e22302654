// A private header of the fake optim.
#pragma once

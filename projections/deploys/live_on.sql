UPDATE deploys SET live = true WHERE id = $1

import { x } from "@vmkeep/contracts"; console.log(x);
